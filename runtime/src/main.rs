//! The `hookflow` binary: parse the command line, then run the command.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hookflow::cli::{Cli, Command, ServeArgs};
use hookflow::engine::{Engine, EnginePolicy};
use hookflow::server::{ServeOptions, Server, Settings, describe_routes};

// Many small, short-lived allocations on every request across threads:
// mimalloc handles that pattern far better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr, filtered by `HOOKFLOW_LOG`; with `otlp`, the spans of
/// `hookflow` at `info` and above are also exported over OTLP/HTTP (their
/// own filter: the log's level does not change what is exported). Returns
/// the exporter's provider, to flush at exit.
fn init_tracing(otlp: Option<&str>) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr is a file on a full
        // disk) is dropped. Reporting it would use `eprintln!`, which
        // panics when stderr fails, taking down whatever thread logged:
        // the store's writer, or a request's handler.
        .log_internal_errors(false)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKFLOW_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    let registry = tracing_subscriber::registry().with(log);
    let Some(endpoint) = otlp else {
        registry.init();
        return None;
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            registry.init();
            tracing::error!(error = %e, "cannot export spans over OTLP; logging only");
            return None;
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("hookflow")
                .build(),
        )
        .build();
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("hookflow"))
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("hookflow", tracing::Level::INFO),
        );
    registry.with(spans).init();
    Some(provider)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let otlp = match &cli.command {
        Command::Serve(args) => args.otlp_endpoint.clone(),
        _ => None,
    };
    let spans = init_tracing(otlp.as_deref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Build {
                dir,
                source_roots,
                cache_dir,
            } => build(&dir, &source_roots, &cache_dir),
            Command::Check { dir } => check(&dir).await,
            Command::New {
                what: hookflow::cli::New::Plugin { name, dir, lang },
            } => new_plugin(&name, &dir, lang),
            Command::RunStep(args) => run_step(*args).await,
            Command::Send(args) => send(args).await,
            Command::Runs { what, server } => {
                hookflow::operate::runs(what, &server.url, server.token.as_ref(), server.json).await
            }
            Command::Triggers { what, server } => {
                hookflow::operate::triggers(what, &server.url, server.token.as_ref(), server.json)
                    .await
            }
        }
    });
    // The spans still buffered are sent before the process ends.
    if let Some(provider) = spans
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: the last spans could not be exported: {e}");
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(
    dir: &std::path::Path,
    source_roots: &[std::path::PathBuf],
    cache_dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let toolchains = cache_dir.join("toolchains");
    hookflow::plugin_build::build_dir(dir, source_roots, &toolchains, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}

fn new_plugin(
    name: &str,
    dir: &std::path::Path,
    lang: hookflow::cli::Lang,
) -> anyhow::Result<ExitCode> {
    use hookflow::cli::Lang;
    let made = hookflow::author::new_plugin(name, dir, lang)?;
    println!("wrote {} (the step)", made.step_dir.display());
    match (lang, made.helper_kept) {
        (Lang::Rust, true) => println!("kept {} (already there)", made.helper_dir.display()),
        (Lang::Rust, false) => println!(
            "wrote {} (the guest helper crate)",
            made.helper_dir.display()
        ),
        _ => {}
    }
    println!("wrote {} (a workflow using it)", made.manifest.display());
    let root = dir.display();
    let test = match lang {
        Lang::Rust => "cargo test",
        Lang::Python => "python3 -m unittest",
        Lang::Js => "npm test",
    };
    println!("next:");
    println!("  (cd {root}/{name} && {test})");
    println!("  hookflow serve --dir {root}/workflows --build --watch --source-root {root}");
    Ok(ExitCode::SUCCESS)
}

async fn run_step(args: hookflow::cli::RunStepArgs) -> anyhow::Result<ExitCode> {
    let opts = hookflow::author::RunStep {
        plugin: args.plugin,
        event: args.event,
        config: args.config,
        allow_http: args.allow_http,
        settings: args.settings,
        secrets: args.secrets,
        kv: args.kv,
        db: args.db,
        timeout: args.timeout,
        fuel: args.fuel,
    };
    let ok = hookflow::author::run_step(&opts, &mut std::io::stdout()).await?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `hookflow send`: a signed delivery, and the answer printed.
async fn send(args: hookflow::cli::SendArgs) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let (specs, problems) = hookflow::config::load_dir(&args.dir);
    let Some(spec) = specs.iter().find(|s| s.name == args.workflow) else {
        for p in &problems {
            eprintln!("{p}");
        }
        anyhow::bail!(
            "no workflow `{}` loads from {}",
            args.workflow,
            args.dir.display()
        );
    };
    let body = match args.data.as_deref() {
        None => b"{}".to_vec(),
        Some(p) if p.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            body
        }
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
    };
    let id = args
        .id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let trigger = match args.path.as_deref() {
        None => &spec.trigger,
        Some(path) => spec.hook_at(path).with_context(|| {
            format!(
                "workflow `{}` has no webhook trigger at `{path}`",
                spec.name
            )
        })?,
    };
    let signed = hookflow::client::sign(trigger, &body, std::time::SystemTime::now(), &id)?;
    let answer =
        hookflow::client::post(&args.url, &signed, &args.content_type, &args.headers, body).await?;
    println!("HTTP {}", answer.status);
    for (name, value) in &answer.headers {
        if matches!(
            name.as_str(),
            "location" | "retry-after" | "idempotent-replayed" | "preference-applied"
        ) {
            println!("{name}: {value}");
        }
    }
    println!("{}", answer.body);
    Ok(if (200..300).contains(&answer.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(EnginePolicy::default())?;
    let (registry, problems) = hookflow::registry::load(dir, &engine).await;
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        println!("ok: {} workflow(s) in {}", registry.len(), dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s)", problems.len());
        Ok(ExitCode::from(1))
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = compiled_cache_dir(&args)?;
    let toolchains = cache_dir.join("toolchains");
    if args.build {
        let (dir, roots, tools) = (
            args.dir.clone(),
            args.source_roots.clone(),
            toolchains.clone(),
        );
        tokio::task::spawn_blocking(move || {
            hookflow::plugin_build::build_dir(&dir, &roots, &tools, &mut std::io::stderr())
        })
        .await??;
    }
    let mut engine = EnginePolicy {
        cache_dir: Some(cache_dir),
        ..EnginePolicy::default()
    };
    args.caps.apply(&mut engine);
    let settings = Settings {
        dir: args.dir,
        db: args.db,
        db_cache: usize::try_from(args.db_cache).unwrap_or(usize::MAX),
        admin_token: args.admin_token,
        engine,
        max_in_flight: args.max_in_flight,
        max_queued: args.max_queued,
        max_queued_bytes: args.max_queued_bytes,
        max_receiving: args.max_receiving,
        body_timeout: args.body_timeout,
        api_tokens: args.api_tokens,
        max_resumes: args.max_resumes,
        retention: args.retention,
        watch: Some(match args.poll_interval {
            Some(every) => hookflow::registry::watch::Watch::Poll(every),
            None => hookflow::registry::watch::Watch::Events,
        }),
    };
    #[cfg(unix)]
    survive_file_size_limit();
    let server = Server::start(&settings).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let registry = server.registry();
    println!("hookflow listening on {base}");
    println!(
        "{} workflow(s) from {}",
        registry.len(),
        settings.dir.display()
    );
    for line in describe_routes(&registry, &base) {
        println!("{line}");
    }
    if !server.problems.is_empty() {
        println!(
            "{} problem(s) left workflows out: run `hookflow check {}`",
            server.problems.len(),
            settings.dir.display()
        );
    }
    drop(registry);
    if args.watch {
        match hookflow::plugin_build::watch_sources(&settings.dir, &args.source_roots, &toolchains)
        {
            Ok(n) => println!("watching {n} plugin source(s); a change builds and reloads"),
            Err(e) => eprintln!("error: cannot watch the plugin sources: {e}"),
        }
    }
    server
        .serve(
            listener,
            shutdown_signal(),
            ServeOptions {
                drain: args.drain_timeout,
                header_timeout: args.header_timeout,
                max_connections: args.max_connections,
            },
        )
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The compiled-code cache's directory, created: `--cache-dir`, or beside
/// the database. Refused inside DIR, whose files are not trusted to be
/// native code.
fn compiled_cache_dir(args: &ServeArgs) -> anyhow::Result<std::path::PathBuf> {
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| args.db.with_extension("cache"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the compiled-code cache {}", dir.display()))?;
    let inside = match (dir.canonicalize(), args.dir.canonicalize()) {
        (Ok(cache), Ok(watched)) => cache.starts_with(&watched),
        _ => false,
    };
    if inside {
        anyhow::bail!(
            "the compiled-code cache {} lies inside the workflow directory {}, whose files are not trusted as native code: choose another with --cache-dir",
            dir.display(),
            args.dir.display()
        );
    }
    Ok(dir)
}

/// A write past the file-size limit (`ulimit -f`) kills a process by
/// default (SIGXFSZ). With the signal handled, the write fails with EFBIG
/// instead, which the store treats like a full disk: webhooks get 503 and
/// the database is reopened once writes work again.
#[cfg(unix)]
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        Ok(mut signals) => {
            tokio::spawn(async move { while signals.recv().await.is_some() {} });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
