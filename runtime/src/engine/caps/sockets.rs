//! `wasi:sockets`, linked so that components whose language runtime
//! imports it (Python's does) load, and denied: no socket is ever created
//! and no name looked up. Outbound HTTP goes through `wasi:http`, where the
//! step's grant decides; raw sockets are never granted. Each attempt is in
//! the attempt's audit trail.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddress, IpAddressFamily, Network,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{DynPollable, SocketError, SocketResult, TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::WasiSocketsView;

use super::super::host::Host;
use super::audited_text;
use crate::execution::HostCall;

const WHY: &str = "sockets are never granted: outbound HTTP goes through wasi:http (allow.http)";

impl Host {
    fn deny_socket(&self, op: &str, target: String) -> SocketError {
        self.audit.record(HostCall::Socket {
            op: op.into(),
            target: audited_text(&target),
            denied: WHY.into(),
        });
        ErrorCode::AccessDenied.into()
    }
}

fn family(f: IpAddressFamily) -> String {
    match f {
        IpAddressFamily::Ipv4 => "ipv4".into(),
        IpAddressFamily::Ipv6 => "ipv6".into(),
    }
}

/// The error conversions these interfaces share, as wasmtime's own
/// sockets implementation does them.
impl network::Host for Host {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets(), error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime_wasi_io::bindings::wasi::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets(), err)
    }
}

impl network::HostNetwork for Host {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets(), this)
    }
}

impl tcp_create_socket::Host for Host {
    fn create_tcp_socket(&mut self, f: IpAddressFamily) -> SocketResult<Resource<TcpSocket>> {
        Err(self.deny_socket("tcp", family(f)))
    }
}

impl udp_create_socket::Host for Host {
    async fn create_udp_socket(&mut self, f: IpAddressFamily) -> SocketResult<Resource<UdpSocket>> {
        Err(self.deny_socket("udp", family(f)))
    }
}

impl ip_name_lookup::Host for Host {
    fn resolve_addresses(
        &mut self,
        _network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        Err(self.deny_socket("lookup", name))
    }
}

/// Never reached: no lookup stream is ever made.
impl ip_name_lookup::HostResolveAddressStream for Host {
    fn resolve_next_address(
        &mut self,
        _stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        Err(ErrorCode::AccessDenied.into())
    }

    fn subscribe(
        &mut self,
        _stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime::bail!("no name lookup is ever made")
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}
