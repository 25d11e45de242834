//! `raftsman agent` as a child process of a test: started against a cluster's replicas, logging JSON lines
//! into a file of its own, killed (SIGKILL) and reaped when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::TestCluster;

pub struct Agent {
    child: Option<Child>,
    /// The node name given (the prefix of the fake nodes' names with `--fake-nodes`).
    pub node_name: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The agent's command line, for a restart.
    command: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts a fake-runtime agent for node `node_name` against every replica of `cluster`, with `extra` flags.
    pub fn fake(cluster: &TestCluster, node_name: &str, extra: &[&str]) -> Agent {
        let servers: Vec<SocketAddr> = cluster.local.members.iter().map(|m| m.api_addr).collect();
        Agent::start(cluster, &servers, node_name, &[&["--runtime", "fake"], extra].concat())
    }

    /// Starts `raftsman agent --node-name NODE --servers SERVERS ARGS...`, joining `cluster` with the node
    /// token its first replica wrote (unless ARGS give a `--token` or a `--kubeconfig`); a `--fake-nodes`
    /// agent, which no node certificate may serve, gets the admin's kubeconfig instead.
    pub fn start(cluster: &TestCluster, servers: &[SocketAddr], node_name: &str, args: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        // ARGS may name the data dir (another agent's, to start on what it left).
        let given = args.windows(2).find(|w| w[0] == "--data-dir").map(|w| PathBuf::from(w[1]));
        let data_dir = given.clone().unwrap_or_else(|| dir.path().join("data"));
        let log = dir.path().join("agent.log");
        let kubelet = raftsman::cluster::local::free_ports(1).expect("a free port")[0];
        let servers: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
        let mut command = vec!["--log-json".to_string(), "agent".into(), "--node-name".into(), node_name.into()];
        command.extend(["--servers".to_string(), servers.join(",")]);
        if given.is_none() {
            command.extend(["--data-dir".to_string(), data_dir.to_string_lossy().into_owned()]);
        }
        command.extend(["--kubelet-addr".to_string(), format!("127.0.0.1:{kubelet}")]);
        if args.contains(&"--fake-nodes") && !args.contains(&"--token") && !args.contains(&"--kubeconfig") {
            let kubeconfig = cluster.local.kubeconfig(0);
            command.extend(["--kubeconfig".to_string(), kubeconfig.to_string_lossy().into_owned()]);
        } else if !args.contains(&"--token") && !args.contains(&"--kubeconfig") {
            let token = cluster.local.node_token_file();
            command.extend(["--token-file".to_string(), token.to_string_lossy().into_owned()]);
        }
        command.extend(args.iter().map(|a| a.to_string()));
        let mut agent = Agent { child: None, node_name: node_name.to_owned(), data_dir, log, command, _dir: dir };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_raftsman"))
            .args(&self.command)
            .env("RAFTSMAN_LOG", "info,raftsman::agent=debug,kube=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("agent log"))
            .stderr(file)
            .spawn()
            .expect("start raftsman agent");
        self.child = Some(child);
    }

    /// Starts the agent again with the same command and data dir (after `kill`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill");
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the agent and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the agent is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent's log lines, parsed (lines that are not JSON are skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The log lines whose message is `message`, as their fields.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["fields"]["message"] == message)
            .map(|mut l| l["fields"].take())
            .collect()
    }

    /// The API server the agent last said it sends its requests to.
    pub fn current_server(&self) -> Option<SocketAddr> {
        self.logged("agent: sending requests to this api server").last()?["server"].as_str()?.parse().ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
