//! The deterministic simulation: one seed gives one whole run. A cluster of 3 or 5 replicas (the real replica
//! code on simulated disks) on turmoil's simulated network and clock, clients recording every operation, a
//! watcher following every change, the controllers' stand-in making fenced writes, and a nemesis striking
//! from the seed's schedule. A fault phase, then a healing phase in which every fault stops and the cluster
//! must converge within a bound; then the checkers read what happened.
//!
//! Every source of randomness is the seed: the schedule, the disks' sync latencies and what a crash keeps,
//! turmoil's network (latencies) and each host's tokio runtime (`select!` order; needs `tokio_unstable`),
//! the clients' choices, and openraft's election timeouts (`store::runtime::seed_elections`). The trace digest
//! folds in every change of every replica's Raft state and the whole history, so that two runs of one seed
//! can be compared.

mod cluster;
pub mod isolated_leader;
mod nemesis;
mod net;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsman::cluster::config::PlantedBugs;
use raftsman::cluster::etcd_client::EtcdClient;
use raftsman::proto::etcd as pb;
use raftsman::store::command::KeyRange;
use raftsman::store::disk::{Cf, Disk};
use raftsman::store::types::Entry;
use raftsman::store::watch::WatchFilter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Endpoint;

use super::control_plane::{self, AppliedWrite};
use super::history::{Operation, Outcome, Recorder};
use super::linearizability::{self, Verdict};
use super::raft_safety::{AppliedEntry, Observation, RaftSafety};
use super::watch_checker;
use super::workload::{client_loop, follow_all_changes, Followed, Writes};
use cluster::{Cluster, CLIENT_PORT, CONTROLLER_KEY};
use nemesis::{Fault, Scheduled};

/// How long the nemesis strikes.
pub const FAULT_PHASE: Duration = Duration::from_secs(12);
/// How long the clients go on after the faults stop.
const HEAL_PHASE: Duration = Duration::from_secs(8);
/// By when, after the faults stop, every replica must run, agree on one leader and have applied the same index.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(6);
/// How long the watcher may take to reach the last acknowledged write once the clients stop.
const WATCH_CATCH_UP: Duration = Duration::from_secs(20);
const CLIENTS: usize = 3;
/// Longest pause of a client between two operations.
const THINK_MS_MAX: u64 = 40;
/// Message latency on a healthy link.
const LATENCY_MAX: Duration = Duration::from_millis(4);

/// What one seed's run found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub replicas: usize,
    pub sim_secs: f64,
    /// Client operations the linearizability checker read.
    pub ops: usize,
    pub faults: usize,
    /// What the faults did: terms that had a leader, unsynced batches crashes lost, catch-ups by snapshot.
    pub leaders: usize,
    pub lost_batches: usize,
    pub snapshot_installs: usize,
    pub failures: Vec<String>,
    pub digest: u64,
}

/// Runs one seed, with `bugs` planted; `trace` prints what the nemesis does as it does it.
pub fn run(seed: u64, bugs: PlantedBugs, trace: bool) -> Report {
    raftsman::store::runtime::seed_elections(Some(seed));
    let mut rng = StdRng::seed_from_u64(seed);
    let replicas = if rng.random_bool(0.5) { 3 } else { 5 };
    let schedule = nemesis::schedule(&mut rng, replicas, FAULT_PHASE);
    let latencies: Vec<Duration> = (0..replicas).map(|_| Duration::from_micros(rng.random_range(100..3_000))).collect();
    let cluster = Arc::new(Cluster::new(replicas, seed, bugs, |i| latencies[i]));

    let mut sim = turmoil::Builder::new()
        .simulation_duration(FAULT_PHASE + HEAL_PHASE + WATCH_CATCH_UP)
        .tick_duration(Duration::from_millis(1))
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(LATENCY_MAX)
        .tcp_capacity(4096)
        .rng_seed(seed)
        .build();
    for (i, name) in cluster.names.iter().enumerate() {
        let cluster = cluster.clone();
        sim.host(name.as_str(), move || cluster::replica(cluster.clone(), i));
    }

    // Clients, the watcher and the nemesis's own client (for leadership transfers).
    let recorder = Arc::new(Mutex::new(Recorder::simulated()));
    let writes = Arc::new(Mutex::new(Writes::default()));
    let load_done = Arc::new(Mutex::new(0usize));
    for id in 0..CLIENTS {
        let (names, recorder, writes, done) =
            (cluster.names.clone(), recorder.clone(), writes.clone(), load_done.clone());
        sim.client(format!("client-{id}").as_str(), async move {
            let until = tokio::time::Instant::now() + FAULT_PHASE + HEAL_PHASE;
            client_loop(id, seed, clients(&names), recorder, writes, until, THINK_MS_MAX).await;
            *done.lock().unwrap() += 1;
            Ok(())
        });
    }
    let (target_tx, target_rx) = tokio::sync::watch::channel(0i64);
    let followed: Arc<Mutex<Followed>> = Arc::default();
    {
        let (names, followed) = (cluster.names.clone(), followed.clone());
        sim.client("watcher", async move {
            *followed.lock().unwrap() = follow_all_changes(clients(&names), target_rx).await;
            Ok(())
        });
    }
    let transfers: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    {
        let (names, transfers) = (cluster.names.clone(), transfers.clone());
        sim.client("nemesis", async move {
            let until = tokio::time::Instant::now() + FAULT_PHASE;
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let due: Vec<(usize, u64)> = std::mem::take(&mut *transfers.lock().unwrap());
                for (from, target) in due {
                    let channel = net::dial(client_endpoint(&names[from]));
                    let mut maintenance = pb::maintenance_client::MaintenanceClient::new(channel);
                    let request = pb::MoveLeaderRequest { target_id: target };
                    let _ = tokio::time::timeout(Duration::from_secs(2), maintenance.move_leader(request)).await;
                }
            }
            Ok(())
        });
    }

    let mut driver = Driver {
        cluster: cluster.clone(),
        rng,
        safety: RaftSafety::default(),
        checked: BTreeMap::new(),
        last_seen: BTreeMap::new(),
        digest: DefaultHasher::new(),
        trace,
        failures: Vec::new(),
        lost_batches: 0,
        snapshot_installs: 0,
        installed: BTreeMap::new(),
    };
    let mut pending = schedule.iter().peekable();
    let mut active: Option<(Scheduled, Undo)> = None;
    let mut converged = false;
    let mut target_sent = false;
    loop {
        let finished = match sim.step() {
            Ok(finished) => finished,
            Err(e) => {
                driver.failures.push(format!("the simulation stopped: {e}"));
                break;
            }
        };
        let now = sim.elapsed();
        driver.observe(now);
        if let Some((fault, _)) = &active {
            if now >= (fault.at + fault.lasts).min(FAULT_PHASE) {
                let (fault, undo) = active.take().expect("checked above");
                driver.note(now, format!("heal {:?}", fault.fault));
                driver.heal(&mut sim, undo);
            }
        }
        if active.is_none() && now < FAULT_PHASE {
            if let Some(next) = pending.next_if(|s| now >= s.at) {
                let leader = driver.leader();
                let undo = driver.strike(&mut sim, next.fault, &transfers);
                driver
                    .note(now, format!("strike {:?} for {:?} (leader: {leader:?}): {undo:?}", next.fault, next.lasts));
                active = Some((*next, undo));
            }
        }
        if now >= FAULT_PHASE && !converged {
            converged = driver.converged();
            if !converged && now > FAULT_PHASE + CONVERGENCE_BOUND {
                driver.failures.push(format!(
                    "liveness: the cluster did not converge (one leader, every replica applied the same index) \
                     within {CONVERGENCE_BOUND:?} after the faults stopped"
                ));
                converged = true;
            }
        }
        if !target_sent && *load_done.lock().unwrap() == CLIENTS {
            let last = writes.lock().unwrap().acked.iter().map(|a| a.revision).max().unwrap_or(0);
            target_tx.send_replace(last);
            target_sent = true;
        }
        if finished {
            break;
        }
    }
    let sim_secs = sim.elapsed().as_secs_f64();

    // The checkers.
    let history: Vec<Operation> =
        std::mem::replace(&mut *recorder.lock().unwrap(), Recorder::simulated()).into_operations();
    let writes = std::mem::take(&mut *writes.lock().unwrap());
    let mut failures = std::mem::take(&mut driver.failures);
    failures.extend(driver.safety.violations().iter().map(|v| format!("raft safety: {v}")));
    match linearizability::check(&history) {
        Verdict::Ok => {}
        Verdict::Violation { key, ops } => {
            failures.push(format!("linearizability: the history of {key} has no linearization"));
            if trace {
                for o in ops.iter().rev().take(40).rev() {
                    eprintln!("  {o:?}");
                }
            }
        }
        Verdict::Unknown { key } => failures.push(format!("linearizability: the checker gave up on {key}")),
    }
    if target_sent && failures.iter().all(|f| !f.starts_with("the simulation stopped")) {
        let followed = followed.lock().unwrap();
        let (delivered, bookmarks) = (&followed.delivered, &followed.bookmarks);
        let seen = format!("the watcher saw {} events and {} bookmarks", delivered.len(), bookmarks.len());
        driver.note(sim.elapsed(), format!("{seen}; {} writes were acknowledged", writes.acked.len()));
        if let Err(broken) = watch_checker::check(delivered, bookmarks, 1, &writes.acked, &writes.tried) {
            failures.push(format!("watch: {broken}"));
        }
    }
    match controller_writes(&cluster) {
        Some(applied) => {
            let acked = cluster.controller_acks.lock().unwrap().clone();
            driver.note(
                sim.elapsed(),
                format!("{} controller writes applied, {} acknowledged", applied.len(), acked.len()),
            );
            if let Err(broken) = control_plane::check(&applied, &acked) {
                failures.push(format!("control plane: {broken}"));
            }
        }
        None => failures.push("control plane: no replica runs at the end to read the controllers' writes from".into()),
    }
    let acked = history.iter().filter(|o| o.outcome == Outcome::Ok).count();
    if acked < 50 {
        failures.push(format!("liveness: only {acked} operations were acknowledged"));
    }
    history.len().hash(&mut driver.digest);
    for o in &history {
        format!("{o:?}").hash(&mut driver.digest);
    }
    Report {
        seed,
        replicas,
        sim_secs,
        ops: history.len(),
        faults: schedule.iter().filter(|s| s.at < FAULT_PHASE).count(),
        leaders: driver.safety.terms_with_a_leader(),
        lost_batches: driver.lost_batches,
        snapshot_installs: driver.snapshot_installs,
        failures,
        digest: driver.digest.finish(),
    }
}

/// The endpoint of a replica's etcd API, with keep-alives so that a connection a partition stalled is dropped
/// and made again once the network heals.
fn client_endpoint(name: &str) -> Endpoint {
    Endpoint::from_shared(format!("http://{name}:{CLIENT_PORT}"))
        .expect("replica names make valid addresses")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_timeout(Duration::from_secs(1))
}

fn clients(names: &[String]) -> Vec<EtcdClient> {
    names.iter().map(|name| EtcdClient::from_channel(net::dial(client_endpoint(name)))).collect()
}

/// Every controller write the store applied, read from the history of the running replica that applied most
/// (the controllers write until the very end, so the others may lag by a write).
fn controller_writes(cluster: &Cluster) -> Option<Vec<AppliedWrite>> {
    let store = (0..cluster.names.len()).filter_map(|i| cluster.store(i)).max_by_key(|s| s.revision())?;
    let filter = WatchFilter {
        range: KeyRange { key: CONTROLLER_KEY.to_vec(), end: Vec::new() },
        prev_kv: false,
        no_put: false,
        no_delete: false,
    };
    let mut applied = Vec::new();
    let mut watcher = store.watch(filter, 1);
    while let Some(batch) = watcher.pull().ok()? {
        for e in batch.events {
            let term = String::from_utf8_lossy(&e.kv.value).parse().unwrap_or(u64::MAX);
            applied.push(AppliedWrite { revision: e.kv.mod_revision, term });
        }
    }
    Some(applied)
}

/// What healing a fault takes.
#[derive(Debug)]
enum Undo {
    Repair(Vec<(String, String)>),
    RepairOneWay(Vec<(String, String)>),
    Release(Vec<(String, String)>),
    Restart(Vec<usize>),
    Latency(Vec<(String, String)>),
    Nothing,
}

/// The simulation's side of a run: observes the replicas after every step and drives the nemesis.
struct Driver {
    cluster: Arc<Cluster>,
    rng: StdRng,
    safety: RaftSafety,
    /// Per replica, the applied index up to which its entries were compared.
    checked: BTreeMap<usize, u64>,
    /// Per replica, the last observation folded into the digest.
    last_seen: BTreeMap<usize, Observation>,
    digest: DefaultHasher,
    trace: bool,
    failures: Vec<String>,
    lost_batches: usize,
    snapshot_installs: usize,
    /// Per running replica, the snapshots it installed so far.
    installed: BTreeMap<usize, u64>,
}

impl Driver {
    fn note(&self, now: Duration, what: String) {
        if self.trace {
            eprintln!("[{:>8.3}s] {what}", now.as_secs_f64());
        }
    }

    /// Checks Raft's safety on what every running replica reports now.
    fn observe(&mut self, now: Duration) {
        let stores: Vec<(usize, raftsman::store::Store)> =
            self.cluster.stores.lock().unwrap().iter().map(|(i, s)| (*i, s.clone())).collect();
        for (i, store) in stores {
            let observation = {
                let role = store.raft_role();
                Observation { replica: Cluster::id(i), term: role.term, leads: role.leads, applied: role.applied_index }
            };
            self.safety.observe(observation);
            if self.last_seen.insert(i, observation) != Some(observation) {
                (now.as_millis(), i, observation.term, observation.leads, observation.applied).hash(&mut self.digest);
            }
            let disk = &self.cluster.disks[i];
            let from = self.checked.get(&i).map_or(0, |c| c + 1);
            // Entries purged behind a snapshot (or never here: they came in one) cannot be compared.
            for index in from..=observation.applied {
                let Ok(Some(bytes)) = disk.get(Cf::Log, &index.to_be_bytes()) else { continue };
                let Ok(entry) = bincode::deserialize::<Entry>(&bytes) else {
                    self.failures.push(format!("replica {i} holds an undecodable log entry at index {index}"));
                    continue;
                };
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                let applied = AppliedEntry { index, term: entry.log_id.leader_id.term, digest: hasher.finish() };
                self.safety.applied_entry(Cluster::id(i), applied);
            }
            self.checked.insert(i, observation.applied);
            let installed = store.snapshots_installed();
            if installed > self.installed.insert(i, installed).unwrap_or(0) {
                self.snapshot_installs += 1;
                self.note(now, format!("replica-{i} installed a snapshot up to {}", observation.applied));
            }
        }
    }

    /// The replica that leads now (the highest term's, if two think they do).
    fn leader(&self) -> Option<usize> {
        self.last_seen
            .iter()
            .filter(|(i, o)| o.leads && self.cluster.store(**i).is_some())
            .max_by_key(|(_, o)| o.term)
            .map(|(i, _)| *i)
    }

    /// `count` replicas, the leader first when asked for.
    fn pick(&mut self, count: usize, leader_first: bool) -> Vec<usize> {
        let n = self.cluster.names.len();
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            all.swap(i, self.rng.random_range(0..=i));
        }
        if leader_first {
            if let Some(leader) = self.leader() {
                all.retain(|i| *i != leader);
                all.insert(0, leader);
            }
        }
        all.truncate(count);
        all
    }

    fn pairs(&self, a: &[usize], b: &[usize]) -> Vec<(String, String)> {
        let names = &self.cluster.names;
        a.iter().flat_map(|x| b.iter().map(move |y| (names[*x].clone(), names[*y].clone()))).collect()
    }

    fn others(&self, of: &[usize]) -> Vec<usize> {
        (0..self.cluster.names.len()).filter(|i| !of.contains(i)).collect()
    }

    fn strike(&mut self, sim: &mut turmoil::Sim<'_>, fault: Fault, transfers: &Mutex<Vec<(usize, u64)>>) -> Undo {
        match fault {
            Fault::Partition { minority, leader } => {
                let cut = self.pick(minority, leader);
                let pairs = self.pairs(&cut, &self.others(&cut));
                for (a, b) in &pairs {
                    sim.partition(a.as_str(), b.as_str());
                }
                Undo::Repair(pairs)
            }
            Fault::OneWayFromLeader => {
                let leader = self.pick(1, true);
                let pairs = self.pairs(&leader, &self.others(&leader));
                for (a, b) in &pairs {
                    sim.partition_oneway(a.as_str(), b.as_str());
                }
                Undo::RepairOneWay(pairs)
            }
            Fault::Bridge => {
                let order = self.pick(self.cluster.names.len(), false);
                let half = (order.len() - 1) / 2;
                let pairs = self.pairs(&order[..half], &order[half + 1..]);
                for (a, b) in &pairs {
                    sim.partition(a.as_str(), b.as_str());
                }
                Undo::Repair(pairs)
            }
            Fault::Crash { count, leader } => {
                let victims = self.pick(count, leader);
                self.crash(sim, &victims);
                Undo::Restart(victims)
            }
            Fault::LongOutage => {
                let leader = self.leader();
                let follower = self.pick(self.cluster.names.len(), false).into_iter().find(|i| Some(*i) != leader);
                let victims: Vec<usize> = follower.into_iter().collect();
                self.crash(sim, &victims);
                Undo::Restart(victims)
            }
            Fault::TransferLeader => {
                let Some(leader) = self.leader() else { return Undo::Nothing };
                let target = self.pick(self.cluster.names.len(), false).into_iter().find(|i| *i != leader);
                if let Some(target) = target {
                    transfers.lock().unwrap().push((leader, Cluster::id(target)));
                }
                Undo::Nothing
            }
            Fault::SwizzleClog => {
                let count = self.rng.random_range(1..=self.cluster.names.len());
                let clogged = self.pick(count, false);
                let pairs = self.pairs(&clogged, &self.others(&clogged));
                for (a, b) in &pairs {
                    sim.hold(a.as_str(), b.as_str());
                }
                Undo::Release(pairs)
            }
            Fault::LatencySpike { ms } => {
                let leader = self.rng.random_bool(0.5);
                let slow = self.pick(1, leader);
                let pairs = self.pairs(&slow, &self.others(&slow));
                for (a, b) in &pairs {
                    sim.set_link_max_message_latency(a.as_str(), b.as_str(), Duration::from_millis(ms));
                }
                Undo::Latency(pairs)
            }
        }
    }

    /// Crashes replicas: their software stops, and their disks keep what was synced plus a random prefix of
    /// the rest.
    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, victims: &[usize]) {
        for i in victims {
            sim.crash(self.cluster.names[*i].as_str());
            self.cluster.stores.lock().unwrap().remove(i);
            let disk = &self.cluster.disks[*i];
            let keep = self.rng.random_range(0..=disk.unsynced());
            self.lost_batches += disk.crash(keep);
        }
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, undo: Undo) {
        match undo {
            Undo::Repair(pairs) => pairs.iter().for_each(|(a, b)| sim.repair(a.as_str(), b.as_str())),
            Undo::RepairOneWay(pairs) => pairs.iter().for_each(|(a, b)| sim.repair_oneway(a.as_str(), b.as_str())),
            Undo::Release(pairs) => {
                // Released in another order than they were clogged, as the swizzle-clog does.
                for (a, b) in pairs.iter().rev() {
                    sim.release(a.as_str(), b.as_str());
                }
            }
            Undo::Restart(victims) => {
                for i in victims {
                    sim.bounce(self.cluster.names[i].as_str());
                    self.safety.restarted(Cluster::id(i));
                    self.checked.remove(&i);
                    self.installed.remove(&i);
                }
            }
            Undo::Latency(pairs) => {
                pairs.iter().for_each(|(a, b)| sim.set_link_max_message_latency(a.as_str(), b.as_str(), LATENCY_MAX))
            }
            Undo::Nothing => {}
        }
    }

    /// Every replica runs, all follow one leader in one term, and all applied the same index.
    fn converged(&self) -> bool {
        let n = self.cluster.names.len();
        let seen: Vec<&Observation> = (0..n).filter_map(|i| self.last_seen.get(&i)).collect();
        if seen.len() < n || (0..n).any(|i| self.cluster.store(i).is_none()) {
            return false;
        }
        let leaders = seen.iter().filter(|o| o.leads).count();
        leaders == 1 && seen.iter().all(|o| o.term == seen[0].term && o.applied == seen[0].applied)
    }
}
