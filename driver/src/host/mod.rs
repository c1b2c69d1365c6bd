//! The local machine's identity: machine ID, public IP, hostname (spec §3.1).
//!
//! - Machine ID: `/etc/machine-id`, trimmed; missing or empty is the fatal
//!   `unable to determine local machine ID`; anything but 32 hex digits is refused too, since
//!   the ID is a registry key.
//! - Public IP (when `public_ip` is not configured): the first IPv4 global-unicast address of
//!   the interface that carries the default route. The default route comes from
//!   `/proc/net/route` (the lowest-metric `0.0.0.0/0` that is up), the interface's addresses
//!   from `getifaddrs(3)`: both are what the kernel reports, without spawning `ip` or parsing
//!   its human-oriented output, and without a netlink client.
//! - Hostname: `gethostname(2)`.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

/// Where systemd keeps the machine ID.
pub const MACHINE_ID_FILE: &str = "/etc/machine-id";
/// The kernel's IPv4 routing table.
pub const ROUTE_TABLE: &str = "/proc/net/route";

/// The machine's identity could not be determined.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// The machine-id file is missing, unreadable or empty.
    NoMachineId { path: String, reason: String },
    /// The machine-id file does not hold 32 hex digits.
    BadMachineId { path: String, value: String },
    /// The routing table or the interface addresses could not be read.
    Network(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::NoMachineId { path, reason } => {
                write!(f, "unable to determine local machine ID ({path}: {reason})")
            }
            HostError::BadMachineId { path, value } => write!(
                f,
                "unable to determine local machine ID ({path} holds {value:?}, not 32 hex digits)"
            ),
            HostError::Network(reason) => write!(f, "unable to determine the public IP: {reason}"),
        }
    }
}

impl std::error::Error for HostError {}

/// The machine ID in `path` (normally [`MACHINE_ID_FILE`]), trimmed.
pub fn machine_id(path: &Path) -> Result<String, HostError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| HostError::NoMachineId {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let id = text.trim();
    if id.is_empty() {
        return Err(HostError::NoMachineId {
            path: shown,
            reason: "empty".to_string(),
        });
    }
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HostError::BadMachineId {
            path: shown,
            value: id.to_string(),
        });
    }
    Ok(id.to_string())
}

/// The interface of the default route in a `/proc/net/route` table: among the up routes to
/// `0.0.0.0/0`, the one with the lowest metric (the first on a tie).
pub fn default_route_interface(route_table: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) = (
                cols.first()?,
                cols.get(1)?,
                cols.get(3)?,
                cols.get(6)?,
                cols.get(7)?,
            );
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let default = u32::from_str_radix(dest, 16).ok()? == 0
                && u32::from_str_radix(mask, 16).ok()? == 0
                && flags & RTF_UP != 0;
            if !default {
                return None;
            }
            Some((metric.parse::<u64>().ok()?, iface.to_string()))
        })
        .enumerate()
        .min_by_key(|(order, (metric, _))| (*metric, *order))
        .map(|(_, (_, iface))| iface)
}

/// Go's `IP.IsGlobalUnicast` for IPv4: not unspecified, loopback, link-local, multicast or
/// broadcast (private ranges count as global unicast, as in fleet).
pub fn is_global_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast())
}

/// The first IPv4 global-unicast address of the default route's interface, or `None` if there
/// is no default route or its interface has no such address.
pub fn public_ipv4() -> Result<Option<Ipv4Addr>, HostError> {
    let table = std::fs::read_to_string(ROUTE_TABLE)
        .map_err(|e| HostError::Network(format!("{ROUTE_TABLE}: {e}")))?;
    let Some(iface) = default_route_interface(&table) else {
        return Ok(None);
    };
    interface_ipv4(&iface)
}

/// The first IPv4 global-unicast address of `iface`.
pub fn interface_ipv4(iface: &str) -> Result<Option<Ipv4Addr>, HostError> {
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| HostError::Network(format!("getifaddrs: {e}")))?;
    Ok(addrs
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .find(|ip| is_global_unicast(*ip)))
}

/// This host's name.
pub fn hostname() -> Result<String, HostError> {
    nix::unistd::gethostname()
        .map_err(|e| HostError::Network(format!("gethostname: {e}")))
        .map(|name| name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
tun0\t00000000\t00000000\t0000\t0\t0\t1\t00000000\t0\t0\t0
";

    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        // tun0 is down (flags 0), eth0's route is not a default route.
        assert_eq!(default_route_interface(TABLE).as_deref(), Some("wlan0"));
        let header_only = TABLE.lines().next().unwrap_or_default();
        assert_eq!(default_route_interface(header_only), None);
        assert_eq!(default_route_interface("garbage\nnot a route\n"), None);
    }

    #[test]
    fn global_unicast_is_gos() {
        for ok in ["10.0.0.1", "192.168.1.2", "203.0.113.9"] {
            assert!(is_global_unicast(ok.parse().expect("ip")), "{ok}");
        }
        for no in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_global_unicast(no.parse().expect("ip")), "{no}");
        }
    }

    #[test]
    fn machine_ids_are_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("flt-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("machine-id");
        std::fs::write(&file, "0123456789abcdef0123456789ABCDEF\n").expect("write");
        assert_eq!(
            machine_id(&file).ok().as_deref(),
            Some("0123456789abcdef0123456789ABCDEF")
        );
        std::fs::write(&file, " \n").expect("write");
        let err = machine_id(&file).expect_err("empty");
        assert!(
            err.to_string()
                .starts_with("unable to determine local machine ID"),
            "{err}"
        );
        std::fs::write(&file, "not-an-id\n").expect("write");
        assert!(matches!(
            machine_id(&file),
            Err(HostError::BadMachineId { .. })
        ));
        let err = machine_id(&dir.join("missing")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("unable to determine local machine ID"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn loopback_has_no_global_address() {
        assert_eq!(interface_ipv4("lo").ok(), Some(None));
        assert!(hostname().is_ok_and(|h| !h.is_empty()));
    }
}
