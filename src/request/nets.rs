//! Lists of networks: `trusted_networks` (parsed once, at config load) and a passdb's
//! `allow_nets` / `allow_real_nets` fields (parsed when a passdb returns them).
//!
//! A list is comma- or space-separated CIDRs or bare addresses; `local` matches a request
//! that came without an IP (a local process). IPv4-mapped IPv6 addresses match IPv4 networks.

use std::net::IpAddr;

use ipnet::IpNet;

/// A parsed list of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetList {
    nets: Vec<IpNet>,
    local: bool,
}

impl NetList {
    /// Parses a list. `Err` names the first entry that is neither `local`, an address nor a
    /// CIDR.
    pub fn parse(text: &str) -> Result<NetList, String> {
        NetList::parse_items(text.split([',', ' ']))
    }

    /// Parses list items given one by one (a YAML list).
    pub fn parse_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<NetList, String> {
        let mut list = NetList::default();
        for item in items.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
            if item == "local" {
                list.local = true;
                continue;
            }
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(item.to_owned()),
                },
            };
            list.nets.push(net.trunc());
        }
        Ok(list)
    }

    /// Whether `ip` is in the list (`None`: a request without an IP, matched by `local`).
    pub fn contains(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return self.local };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Adds another list's entries.
    pub fn extend(&mut self, other: NetList) {
        self.nets.extend(other.nets);
        self.local |= other.local;
    }
}

/// Whether `ip` is in the list `text`. An entry that does not parse makes the whole list match
/// nothing: a passdb's broken `allow_nets` must refuse, not allow.
pub fn allowed(text: &str, ip: Option<IpAddr>) -> bool {
    NetList::parse(text).is_ok_and(|list| list.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets() {
        let v4 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(allowed("10.0.0.0/8", v4("10.1.2.3")));
        assert!(!allowed("10.0.0.0/8", v4("11.1.2.3")));
        assert!(allowed("192.0.2.1", v4("192.0.2.1")));
        assert!(allowed("127.0.0.0/8, ::1", v4("::1")));
        assert!(allowed("10.0.0.0/8", v4("::ffff:10.9.9.9")));
        assert!(allowed("local", None));
        assert!(!allowed("10.0.0.0/8", None));
        assert!(!allowed("garbage", v4("10.0.0.1")));
        assert!(!allowed("10.0.0.0/8 garbage", v4("10.0.0.1")));
        assert!(allowed("0.0.0.0/0", v4("203.0.113.9")));
        assert!(allowed("2001:db8::/32", v4("2001:db8::1")));
        assert!(allowed("10.1.2.3/8", v4("10.9.9.9")), "host bits in a CIDR are ignored");
        assert!(NetList::parse("10.0.0.0/33").is_err());
    }
}
