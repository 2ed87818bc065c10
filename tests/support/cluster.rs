//! Three nats-servers with JetStream clustered on loopback (free ports, a directory each),
//! or each in a network namespace of its own (`start_placed`), for measuring what a fleet
//! sees when a server dies or is cut off: `kill9(i)` and `restart(i)` one of them, and
//! `leader(stream)`, the server leading a stream's group as `$JS.API.STREAM.INFO` says.
//! Stopped (SIGKILL) on drop, also when a test fails.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::nats::{binary, free_port};

/// Where one server runs: the address it takes clients on, the address of its cluster
/// routes, and the command that starts a program there (`None`: here; else a prefix such
/// as `ip netns exec NS`).
#[derive(Clone)]
pub(crate) struct Place {
    pub(crate) client: SocketAddr,
    pub(crate) route: SocketAddr,
    pub(crate) run_in: Option<Vec<String>>,
}

pub(crate) struct Cluster {
    dir: PathBuf,
    places: Vec<Place>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts three servers on loopback and waits until each takes connections.
    pub(crate) fn start(dir: &Path) -> Cluster {
        let places = (0..3)
            .map(|_| Place {
                client: ([127, 0, 0, 1], free_port()).into(),
                route: ([127, 0, 0, 1], free_port()).into(),
                run_in: None,
            })
            .collect();
        Self::start_placed(dir, places)
    }

    /// Starts three servers where `places` says, none advertising the others' addresses
    /// to clients (a client reaches only the servers it is given), and waits until each
    /// takes connections.
    pub(crate) fn start_placed(dir: &Path, places: Vec<Place>) -> Cluster {
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            places,
            children: vec![None, None, None],
        };
        for i in 0..3 {
            cluster.launch(i);
        }
        cluster
    }

    /// The name server `i` has in the cluster (what a stream's leader is reported as).
    pub(crate) fn name(i: usize) -> String {
        format!("n{i}")
    }

    fn launch(&mut self, i: usize) {
        let place = self.places[i].clone();
        let routes: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("nats://{}", self.places[j].route))
            .collect();
        let dir = self.dir.join(Self::name(i));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = match &place.run_in {
            None => Command::new(binary()),
            Some(prefix) => {
                let mut command = Command::new(&prefix[0]);
                command.args(&prefix[1..]).arg(binary());
                command.arg("--no_advertise");
                command
            }
        };
        let child = command
            .args(["-js", "-sd"])
            .arg(&dir)
            .args([
                "-a",
                &place.client.ip().to_string(),
                "-p",
                &place.client.port().to_string(),
            ])
            .args([
                "--server_name",
                &Self::name(i),
                "--cluster_name",
                "keyledger-measure",
            ])
            .args(["--cluster", &format!("nats://{}", place.route)])
            .args(["--routes", &routes.join(",")])
            .arg("-l")
            .arg(dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&place.client, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "server {i} does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every server's client URL, comma-separated (what a host is given).
    pub(crate) fn urls(&self) -> String {
        self.places
            .iter()
            .map(|p| format!("nats://{}", p.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i`'s client URL.
    pub(crate) fn url(&self, i: usize) -> String {
        format!("nats://{}", self.places[i].client)
    }

    /// Kills server `i` with SIGKILL.
    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again with its store.
    pub(crate) fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.launch(i);
    }

    /// Whether server `i` runs.
    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// The index of the server named `name`.
    pub(crate) fn index(name: &str) -> Option<usize> {
        (0..3).find(|&i| Self::name(i) == name)
    }

    /// Runs `f` with a JetStream context on whichever servers answer; `None` if none does
    /// within a few seconds.
    pub(crate) fn with_jetstream<T>(
        &self,
        f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T,
    ) -> Option<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let urls = self.urls();
        rt.block_on(async {
            let addrs: Vec<&str> = urls.split(',').collect();
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(addrs.as_slice());
            let client = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .ok()?
                .ok()?;
            let js = async_nats::jetstream::new(client);
            tokio::time::timeout(Duration::from_secs(5), f(js)).await.ok()
        })
    }

    /// Waits (at most a minute) until JetStream answers on the cluster: its meta group has
    /// a leader.
    pub(crate) fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.with_jetstream(async |js| js.query_account().await.is_ok()) != Some(true) {
            assert!(
                Instant::now() < deadline,
                "JetStream does not answer on the cluster"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server leading `stream`'s group, and whether both other replicas are current
    /// and online; `None` while it has no leader (or no server answers).
    pub(crate) fn leader(&self, stream: &str) -> Option<(String, bool)> {
        self.with_jetstream(async |js| {
            let mut s = js.get_stream(stream).await.ok()?;
            let info = s.info().await.ok()?;
            let cluster = info.cluster.as_ref()?;
            let leader = cluster.leader.clone()?;
            let settled =
                cluster.replicas.len() == 2 && cluster.replicas.iter().all(|r| r.current && !r.offline);
            Some((leader, settled))
        })
        .flatten()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill9(i);
        }
    }
}
