//! The load tool only ever sends to this machine: a target must be an `http://` URL on a loopback
//! address (127.0.0.0/8, `::1` or `localhost`); anything else is refused before a request leaves.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use url::{Host, Url};

/// Parses `url` and checks that it is a loopback target. Returns it without a trailing slash.
pub fn loopback_base(url: &str) -> anyhow::Result<String> {
    let parsed = Url::parse(url).with_context(|| format!("target {url:?} is not a URL"))?;
    if parsed.scheme() != "http" {
        bail!("target {url:?}: only http:// targets on this machine are allowed");
    }
    let ok = match parsed.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !ok {
        bail!("target {url:?}: only loopback hosts (127.0.0.1, ::1, localhost) are allowed");
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// A listen address must be a loopback one too.
pub fn loopback_listen(addr: SocketAddr) -> anyhow::Result<()> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(()),
        IpAddr::V6(ip) if ip.is_loopback() => Ok(()),
        _ => bail!("listen address {addr}: only loopback addresses are allowed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            loopback_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(loopback_base("http://127.1.2.3:1").is_ok());
        assert!(loopback_base("http://[::1]:8080").is_ok());
        assert!(loopback_base("http://localhost:8080").is_ok());
        for bad in [
            "http://10.0.0.1:8080",
            "http://192.168.1.1",
            "http://example.com",
            "https://127.0.0.1",
            "http://127.0.0.1.example.com",
            "nonsense",
        ] {
            assert!(loopback_base(bad).is_err(), "{bad}");
        }
        assert!(loopback_listen("127.0.0.1:0".parse().unwrap()).is_ok());
        assert!(loopback_listen("0.0.0.0:0".parse().unwrap()).is_err());
    }
}
