//! Making the service range local: a `local` route for the whole range (`ip route replace local <range> dev lo
//! table local`), as kube-proxy's IPVS mode binds the addresses it serves to a dummy interface. The host then
//! takes every packet to a service address as its own: the proxy can listen on any of them, pods reach them
//! through their gateway, and none can leave the machine, even for a Service the proxy has not seen yet.
//! Needs CAP_NET_ADMIN; the agent refuses to run its proxy without it.

use std::process::Command;

/// Adds (or keeps) the local route for `range` (a CIDR) and checks the kernel holds it.
pub fn make_local(range: &str) -> Result<(), String> {
    let route = ["route", "replace", "local", range, "dev", "lo", "table", "local"];
    let out = Command::new("ip").args(route).output().map_err(|e| format!("running `ip route`: {e}"))?;
    if !out.status.success() {
        return Err(format!("`ip {}` failed: {}", route.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    if !is_local(range)? {
        return Err(format!("the local route for {range} is not in the kernel's local table"));
    }
    Ok(())
}

/// Whether the kernel's local table holds a `local` route for `range`.
pub fn is_local(range: &str) -> Result<bool, String> {
    let out = Command::new("ip")
        .args(["route", "show", "table", "local", "type", "local", "exact", range])
        .output()
        .map_err(|e| format!("running `ip route`: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.contains("dev lo")))
}
