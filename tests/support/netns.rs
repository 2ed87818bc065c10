//! Network namespaces joined by bridges, for partition tests: every node (a nats-server, a
//! keyledger host) runs in a namespace of its own, with one interface (a veth pair) on each
//! network it belongs to. `cut(node, network)` takes the node's cable out of that network's
//! bridge: its packets go nowhere, open connections stall and new ones time out, as when a
//! link or a switch port dies (not a refused connection, which a client notices at once);
//! `heal` plugs it back in.
//!
//! The test process sits on the networks made with `reachable: true` (address `.254`), so
//! it can talk to the nodes there whatever is cut elsewhere.
//!
//! Needs root (`CAP_NET_ADMIN`), which CI has: without it the test fails saying so, unless
//! `KEYLEDGER_SKIP_NETNS=1` asks to skip it. Names carry the test process's id; addresses
//! come from 198.18.0.0/15 (set aside for tests), three /24s no route of the machine names.
//! What a net made (namespaces and the processes left in them, bridges, veth pairs) is
//! removed on drop, also when the test fails, and nothing else; what a test process killed
//! with SIGKILL left (namespaces with their processes, links) is removed by the next run,
//! which finds that process gone from `/proc`. (Two runs in containers that share the
//! network but not the process ids could take each other's names: one fails at once,
//! "File exists", and removes nothing of the other's.)

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// What every name made here starts with, followed by the test process's id.
const TAG: &str = "klp";

/// Runs `ip` with `args`; panics with what it said unless it succeeds.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` with `args`, ignoring failure (cleanup); returns its standard output.
fn ip_quiet(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A node: a namespace, and its interfaces by network.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    namespace: String,
}

pub(crate) struct Net {
    tag: String,
    /// Network `n` is `198.18.(3 × OCTET + n).0/24`.
    octet: u8,
    bridges: Vec<String>,
    namespaces: Vec<String>,
    /// Root-side ends of the veth pairs, by (node, network).
    links: Vec<(String, usize, String)>,
}

impl Net {
    /// `None` when the test may not make namespaces and `KEYLEDGER_SKIP_NETNS=1` says to
    /// skip it; else `networks` bridges, the test process on those marked reachable.
    pub(crate) fn new(reachable: &[bool]) -> Option<Net> {
        if std::env::var_os("KEYLEDGER_SKIP_NETNS").is_some_and(|v| v == "1") {
            eprintln!("skipped: KEYLEDGER_SKIP_NETNS=1");
            return None;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        assert!(
            root,
            "this test puts NATS servers and hosts in network namespaces, which needs root \
             (CAP_NET_ADMIN), as CI runs it: run it as root, or set KEYLEDGER_SKIP_NETNS=1 \
             to skip it"
        );
        remove_leftovers();
        static MADE: AtomicU32 = AtomicU32::new(0);
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // One letter per Net of this process: `TAG`, the process id, the letter.
        let tag = format!("{TAG}{pid}{}", char::from(b'a' + (made % 26) as u8));
        // Addresses from 198.18.0.0/15, the range set aside for tests (RFC 2544): three
        // /24s in a row, `198.18.3K.0` on, none of which any route of this machine names.
        let taken = ip_quiet(&["-4", "-o", "addr"]) + &ip_quiet(&["-4", "route", "show", "table", "all"]);
        let octet = (0..84u32)
            .map(|k| ((pid + 7 * made + k) % 84) as u8)
            .find(|o| (0..3).all(|n| !taken.contains(&format!("198.18.{}.", 3 * o + n))))
            .expect("three free /24s in 198.18.0.0/16");
        let mut net = Net {
            tag,
            octet,
            bridges: Vec::new(),
            namespaces: Vec::new(),
            links: Vec::new(),
        };
        for (n, reach) in reachable.iter().enumerate() {
            let bridge = format!("{}b{n}", net.tag);
            ip(&["link", "add", &bridge, "type", "bridge"]);
            net.bridges.push(bridge.clone());
            ip(&["link", "set", &bridge, "up"]);
            if *reach {
                let addr = format!("{}/24", net.addr(n, 254));
                ip(&["addr", "add", &addr, "dev", &bridge]);
            }
        }
        Some(net)
    }

    /// What the names of everything made here start with.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// Address `host` (1–253) on network `n`.
    pub(crate) fn addr(&self, n: usize, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 3 * self.octet + n as u8, host)
    }

    /// A new namespace named after `name` (at most 3 characters), its loopback up.
    pub(crate) fn node(&mut self, name: &str) -> Node {
        assert!(name.len() <= 3, "{name}: interface names are short");
        let namespace = format!("{}{name}", self.tag);
        ip(&["netns", "add", &namespace]);
        self.namespaces.push(namespace.clone());
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        Node {
            name: name.to_owned(),
            namespace,
        }
    }

    /// Plugs `node` into network `n` at address `host`; returns the address.
    pub(crate) fn attach(&mut self, node: &Node, n: usize, host: u8) -> Ipv4Addr {
        let outside = format!("{}{}{n}", self.tag, node.name);
        assert!(n < 3, "three networks at most");
        assert!(outside.len() <= 15, "{outside}: too long for an interface name");
        let inside = format!("net{n}");
        ip(&[
            "link",
            "add",
            &outside,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
            "netns",
            &node.namespace,
        ]);
        self.links.push((node.name.clone(), n, outside.clone()));
        ip(&["link", "set", &outside, "master", &self.bridges[n], "up"]);
        let addr = self.addr(n, host);
        ip(&[
            "-n",
            &node.namespace,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &inside,
        ]);
        ip(&["-n", &node.namespace, "link", "set", &inside, "up"]);
        addr
    }

    fn link(&self, node: &Node, n: usize) -> &str {
        self.links
            .iter()
            .find(|(name, net, _)| *name == node.name && *net == n)
            .map(|(_, _, link)| link.as_str())
            .unwrap_or_else(|| panic!("{} is not on network {n}", node.name))
    }

    /// Takes `node` off network `n`: nothing it sends there arrives, nothing reaches it.
    pub(crate) fn cut(&self, node: &Node, n: usize) {
        ip(&["link", "set", self.link(node, n), "nomaster"]);
    }

    /// Puts `node` back on network `n`.
    pub(crate) fn heal(&self, node: &Node, n: usize) {
        ip(&["link", "set", self.link(node, n), "master", &self.bridges[n]]);
    }

    /// The command line that runs a program inside `node`'s namespace: `ip netns exec NS`
    /// (which becomes the program: its process id is the child's).
    pub(crate) fn run_in(&self, node: &Node) -> Vec<String> {
        ["ip", "netns", "exec", &node.namespace]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// A command for `program` in `node`'s namespace.
    pub(crate) fn command(&self, node: &Node, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let prefix = self.run_in(node);
        let mut command = Command::new(&prefix[0]);
        command.args(&prefix[1..]).arg(program);
        command
    }
}

/// Removes what this net made, and nothing else: its namespaces (killing what still runs
/// in them), its bridges and its veth pairs.
impl Drop for Net {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            remove_namespace(namespace);
        }
        for name in self.links.iter().map(|(_, _, l)| l).chain(&self.bridges) {
            ip_quiet(&["link", "del", name]);
        }
    }
}

/// Kills every process in `namespace` (a host or server a test left running), then
/// removes the namespace.
fn remove_namespace(namespace: &str) {
    for pid in ip_quiet(&["netns", "pids", namespace]).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    ip_quiet(&["netns", "del", namespace]);
}

/// Removes every namespace (and what runs in it), bridge and veth pair named under `tag`:
/// what a test process that no longer runs left behind.
fn remove(tag: &str) {
    for line in ip_quiet(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if is_ours(name, tag) {
            remove_namespace(name);
        }
    }
    for line in ip_quiet(&["-o", "link", "show"]).lines() {
        // "7: NAME@if2: <...>" or "7: NAME: <...>"
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else {
            continue;
        };
        if is_ours(name, tag) {
            ip_quiet(&["link", "del", name]);
        }
    }
}

/// Whether `name` was made under `tag` (a process's, or one of its nets'), not under a
/// longer process id that starts alike.
fn is_ours(name: &str, tag: &str) -> bool {
    name.strip_prefix(tag)
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
}

/// Removes what test processes that no longer run left behind.
fn remove_leftovers() {
    let names = ip_quiet(&["netns", "list"]) + &ip_quiet(&["-o", "link", "show"]);
    let mut dead = std::collections::BTreeSet::new();
    for word in names.split(|c: char| c.is_whitespace() || c == ':' || c == '@') {
        let Some(rest) = word.strip_prefix(TAG) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && !std::path::Path::new(&format!("/proc/{digits}")).exists() {
            dead.insert(digits);
        }
    }
    for pid in dead {
        remove(&format!("{TAG}{pid}"));
    }
}
