//! Where a webhook may be posted (DESIGN §11), so that an admin cannot turn strongroom
//! into a way into its own network (SSRF): `https://` only, and never to a private,
//! loopback or link-local address — unless the host is listed in
//! `STRONGROOM_WEBHOOK_ALLOW_HOSTS`, which also allows `http://` to it.
//!
//! Checked twice: when an endpoint is created (its URL, and what its host resolves to
//! then, so a mistake is told at once), and at every attempt, by the delivery client's
//! resolver ([`GuardedResolver`]): the addresses a connection is made to are the ones that
//! were checked, so a name that resolves to a public address at creation and to a private
//! one later (DNS rebinding) is refused then. Redirects are never followed and no proxy
//! is used, so nothing else picks the address.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// URLs longer than this are refused.
pub const MAX_URL_LEN: usize = 2_048;

/// The hosts exempt from the rules (lower-cased names or addresses as written in URLs).
#[derive(Clone, Debug, Default)]
pub struct TargetPolicy {
    allowed: Arc<HashSet<String>>,
}

impl TargetPolicy {
    pub fn new(allow_hosts: &[String]) -> Self {
        let allowed = allow_hosts
            .iter()
            .map(|h| h.trim().trim_start_matches('[').trim_end_matches(']'))
            .filter(|h| !h.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Self {
            allowed: Arc::new(allowed),
        }
    }

    fn listed(&self, host: &str) -> bool {
        self.allowed.contains(&host.to_ascii_lowercase())
    }

    /// The URL, if its form may be posted to; otherwise what is wrong, for a person.
    /// Does not resolve the host (see [`TargetPolicy::check_resolution`]).
    pub fn check_url(&self, text: &str) -> Result<Url, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("a webhook URL is at most {MAX_URL_LEN} characters"));
        }
        let url = Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
        let host = host_of(&url).ok_or("the URL has no host")?;
        let listed = self.listed(&host);
        match url.scheme() {
            "https" => {}
            "http" if listed => {}
            "http" => {
                return Err(format!(
                    "webhooks are posted over https:// only ({host} is not in \
                     STRONGROOM_WEBHOOK_ALLOW_HOSTS)"
                ));
            }
            other => return Err(format!("webhooks are posted over https://, not {other}:")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "a webhook URL may not carry credentials (user:password@): verify the \
                 signature instead"
                    .into(),
            );
        }
        if url.fragment().is_some() {
            return Err("a webhook URL has no #fragment".into());
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && !listed
            && !is_public(ip)
        {
            return Err(refused_address(&host));
        }
        Ok(url)
    }

    /// Resolves the URL's host now and refuses it if any address it has is not public
    /// (unless listed).
    pub async fn check_resolution(&self, url: &Url) -> Result<(), String> {
        let host = host_of(url).ok_or("the URL has no host")?;
        if self.listed(&host) || host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        resolve_public(&host).await.map(drop)
    }

    /// The resolver the delivery client connects through.
    pub fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            policy: self.clone(),
        }
    }
}

/// The URL's host without IPv6 brackets, lower-cased.
fn host_of(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

fn refused_address(host: &str) -> String {
    format!(
        "{host} is a private, loopback or link-local address; webhooks go to public \
         addresses unless the host is listed in STRONGROOM_WEBHOOK_ALLOW_HOSTS"
    )
}

/// Every address `host` resolves to, if all are public.
async fn resolve_public(host: &str) -> Result<Vec<SocketAddr>, String> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| format!("{host} does not resolve"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    if addresses.iter().any(|a| !is_public(a.ip())) {
        return Err(format!(
            "{host} resolves to a private, loopback or link-local address; webhooks go \
             to public addresses unless the host is listed in STRONGROOM_WEBHOOK_ALLOW_HOSTS"
        ));
    }
    Ok(addresses)
}

/// Resolves names for the delivery client, refusing those that resolve to an address
/// that is not public (unless the name is listed).
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let listed = self.policy.listed(&host);
        Box::pin(async move {
            let addresses = if listed {
                tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .collect::<Vec<_>>()
            } else {
                resolve_public(&host)
                    .await
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?
            };
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is an ordinary public unicast address: not loopback, private (RFC 1918,
/// unique local), link-local, shared (CGNAT), unspecified, multicast, broadcast,
/// documentation, benchmarking or reserved — and, for IPv6 forms that embed an IPv4
/// address (mapped, NAT64), the same of that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(
                !is_public(private.parse().expect("an address")),
                "{private}"
            );
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().expect("an address")), "{public}");
        }
    }

    #[test]
    fn urls_are_https_public_and_plain_unless_listed() {
        let policy = TargetPolicy::new(&["127.0.0.1".into(), "Hooks.Internal".into()]);
        assert!(policy.check_url("https://ci.example.com/hook").is_ok());
        assert!(policy.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(policy.check_url("http://hooks.internal/x").is_ok());
        for refused in [
            "http://ci.example.com/hook",
            "ftp://ci.example.com/hook",
            "https://10.0.0.5/hook",
            "https://[::1]/hook",
            "https://user:pw@ci.example.com/hook",
            "https://ci.example.com/hook#frag",
            "not a url",
        ] {
            assert!(policy.check_url(refused).is_err(), "{refused}");
        }
    }
}
