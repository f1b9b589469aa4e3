//! What a step may do beyond computing: its `allow` grant (outbound HTTP
//! hosts, a key-value bucket, config names, and limits on each), checked
//! into [`Grants`], and the host patterns grants and the operator's
//! `--allow-http` ceiling are written in.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

/// A step's grants, resolved. The default grants nothing.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Hosts the step may call (`allow.http`); empty: none. Shared, so
    /// that a call's limits are made without copying it.
    pub http: Arc<[HostPattern]>,
    /// Limits on its outbound calls; `None` fields take the operator's
    /// defaults, and every value is held to the operator's ceiling.
    pub http_timeout: Option<Duration>,
    pub http_max_response: Option<u64>,
    pub http_max_calls: Option<u32>,
    /// The key-value bucket it may open (`allow.kv`), if any.
    pub kv: Option<KvGrant>,
    /// The `wasi:config` names it may read, with their values.
    pub config: Vec<ConfigEntry>,
}

impl Grants {
    /// The values that must never appear in a record, log or error.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.config
            .iter()
            .filter_map(|c| c.secret.then_some(c.value.as_str()))
    }
}

/// The bucket a step may open, and where its keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvGrant {
    /// What the step opens it by (`wasi:keyvalue/store.open`); `""` and
    /// `"default"` open it too.
    pub bucket: String,
    /// The namespace its keys are kept under: `workflow/NAME` for
    /// `kv = true` (the workflow's own), `shared/NAME` for `kv = "NAME"`
    /// (every workflow granting the same name shares it).
    pub namespace: String,
}

/// One name a step may read through `wasi:config/store`.
#[derive(Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    /// From `[secrets]`: redacted wherever the step's record could show it.
    pub secret: bool,
}

impl std::fmt::Debug for ConfigEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret { "(secret)" } else { &self.value };
        write!(f, "{}={value}", self.name)
    }
}

/// `allow = { ... }` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllow {
    #[serde(default)]
    pub http: Vec<Spanned<String>>,
    pub http_timeout: Option<Spanned<String>>,
    pub http_max_response: Option<Spanned<String>>,
    pub http_max_calls: Option<Spanned<u32>>,
    pub kv: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub config: Vec<Spanned<String>>,
}

/// The workflow's `[settings]` and `[secrets]`, the values `allow.config`
/// names: settings written as they are, secrets as `env:NAME` or
/// `file:PATH`.
#[derive(Default)]
pub(super) struct ConfigValues {
    pub settings: BTreeMap<String, Spanned<String>>,
    /// Resolved secrets; `None` for one that did not resolve (reported
    /// where it is written).
    pub secrets: BTreeMap<String, Option<String>>,
}

/// A host in a grant or the operator's ceiling, with an optional port:
/// `api.example.com`, `*.slack.com:443`, `*`, `127.0.0.1:9000`,
/// `[::1]:9000`, or (for addresses) `10.0.0.0/8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostMatch,
    /// `None`: any port.
    port: Option<u16>,
    /// As written, for messages.
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `*`: any host name or public address.
    Any,
    /// `*.example.com`: names ending in `.example.com` (stored with the dot).
    Suffix(String),
    /// One host name, lower case, no trailing dot.
    Name(String),
    /// Addresses: one (`127.0.0.1`, a /32) or a network.
    Net(IpNet),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("host `{text}` {why}"));
        if text.contains("://") || text.contains('/') && !looks_like_cidr(text) {
            return bad(
                "must be a host with an optional port, e.g. `api.example.com` or `api.example.com:443`, without a scheme or path",
            );
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self::new(HostMatch::Net(net), None, text));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::new(HostMatch::Net(IpNet::from(ip)), None, text));
        }
        if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
            return Ok(Self::new(
                HostMatch::Net(IpNet::from(addr.ip())),
                Some(addr.port()),
                text,
            ));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, Some(p)),
                _ => return bad("has a port that is not a number from 1 to 65535"),
            },
            None => (text, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if host == "*" {
            return Ok(Self::new(HostMatch::Any, port, text));
        }
        if name.is_empty()
            || !name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return bad("is not a host name (letters, digits, `-` and dots; `*.` only in front)");
        }
        let host = match host.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_string()),
            None => HostMatch::Name(host),
        };
        Ok(Self::new(host, port, text))
    }

    fn new(host: HostMatch, port: Option<u16>, text: &str) -> Self {
        Self {
            host,
            port,
            text: text.to_string(),
        }
    }

    /// Whether a request to `host` (lower case; a name or an address) on
    /// `port` is within the pattern.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host.parse::<IpAddr>()) {
            (HostMatch::Any, _) => true,
            (HostMatch::Net(net), Ok(ip)) => net.contains(&ip),
            (HostMatch::Suffix(suffix), Err(_)) => host.ends_with(suffix.as_str()),
            (HostMatch::Name(name), Err(_)) => name == host,
            _ => false,
        }
    }

    /// Whether the pattern names `ip` (reached as `host`) itself, as a
    /// private, loopback or link-local address needs: by that address or
    /// its network, or by the exact host name. Wildcards never do.
    pub fn names_address(&self, host: &str, ip: IpAddr, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostMatch::Net(net) => net.contains(&ip),
            HostMatch::Name(name) => name == host,
            HostMatch::Any | HostMatch::Suffix(_) => false,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn looks_like_cidr(text: &str) -> bool {
    text.parse::<IpNet>().is_ok()
}

/// Whether `ip` is an address on the public internet: not loopback,
/// private, link-local, shared (CGNAT), unspecified, multicast,
/// documentation or otherwise reserved. IPv4-mapped IPv6 addresses are
/// judged as the IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_match_names_ports_and_networks() {
        assert!(p("api.example.com").matches("api.example.com", 443));
        assert!(p("API.Example.com.").matches("api.example.com", 80));
        assert!(!p("api.example.com").matches("example.com", 443));
        assert!(p("*.slack.com:443").matches("hooks.slack.com", 443));
        assert!(!p("*.slack.com:443").matches("hooks.slack.com", 80));
        assert!(!p("*.slack.com").matches("slack.com", 443));
        assert!(!p("*.slack.com").matches("evilslack.com", 443));
        assert!(p("*").matches("anything.example", 8080));
        assert!(p("127.0.0.1").matches("127.0.0.1", 9000));
        assert!(p("127.0.0.1:9000").matches("127.0.0.1", 9000));
        assert!(!p("127.0.0.1:9000").matches("127.0.0.1", 9001));
        assert!(p("[::1]:8080").matches("::1", 8080));
        assert!(p("10.0.0.0/8").matches("10.1.2.3", 80));
        assert!(!p("10.0.0.0/8").matches("11.1.2.3", 80));
        assert!(!p("127.0.0.1").matches("localhost", 80));
    }

    #[test]
    fn only_a_pattern_naming_an_address_admits_a_private_one() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(p("127.0.0.1").names_address("127.0.0.1", lo, 80));
        assert!(p("localhost").names_address("localhost", lo, 80));
        assert!(p("127.0.0.0/8").names_address("sink.internal", lo, 80));
        assert!(!p("*").names_address("localhost", lo, 80));
        assert!(!p("*.internal").names_address("a.internal", lo, 80));
        assert!(!p("localhost:81").names_address("localhost", lo, 80));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "https://api.example.com",
            "api.example.com/path",
            "api..example.com",
            "a*.example.com",
            "example.com:0",
            "example.com:99999",
            "",
        ] {
            let e = HostPattern::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("host `{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }
}
