//! The nemesis: which faults strike when, all chosen from the run's seed before it starts. Faults follow one
//! another (each healed before the next strikes); who they hit is decided when they strike, since "the
//! leader" is whoever leads at that moment.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Cuts `minority` replicas off from the rest, both ways; with `leader`, the leader is among them.
    Partition { minority: usize, leader: bool },
    /// The leader's messages to every other replica are lost; it still hears them.
    OneWayFromLeader,
    /// Two sides that cannot reach each other, both reaching one bridge replica.
    Bridge,
    /// Crashes `count` replicas (the leader first, with `leader`), losing what their disks had not synced, and
    /// restarts them when the fault ends. A crash of the leader lands in the middle of the clients' writes.
    Crash { count: usize, leader: bool },
    /// Hands leadership to another replica under load (the etcd API's MoveLeader).
    TransferLeader,
    /// Holds every link of one replica after another (FoundationDB's swizzle-clog): messages wait, then all
    /// flow again when the fault ends.
    SwizzleClog,
    /// Makes one replica's links slow (up to `ms` per message).
    LatencySpike { ms: u64 },
    /// Keeps a follower down long enough that the leader compacts its log past it: it comes back through a
    /// snapshot install.
    LongOutage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// Faults for a fault phase of `phase` on `replicas` replicas.
pub fn schedule(rng: &mut StdRng, replicas: usize, phase: Duration) -> Vec<Scheduled> {
    let majority = replicas / 2 + 1;
    let mut faults = Vec::new();
    let mut at = Duration::from_millis(rng.random_range(500..1500));
    while at < phase {
        let fault = match rng.random_range(0..9) {
            0 => Fault::Partition { minority: rng.random_range(1..majority), leader: true },
            1 => Fault::Partition { minority: rng.random_range(1..majority), leader: rng.random_bool(0.3) },
            2 => Fault::OneWayFromLeader,
            3 => Fault::Bridge,
            4 => Fault::Crash { count: 1, leader: rng.random_bool(0.7) },
            // A majority down at once: the acknowledged writes must survive on what was synced.
            5 => Fault::Crash { count: rng.random_range(majority..=replicas), leader: true },
            6 => Fault::TransferLeader,
            7 if rng.random_bool(0.5) => Fault::SwizzleClog,
            7 => Fault::LatencySpike { ms: rng.random_range(100..600) },
            _ => Fault::LongOutage,
        };
        let lasts = match fault {
            Fault::LongOutage => Duration::from_millis(rng.random_range(4_000..6_000)),
            Fault::TransferLeader => Duration::from_millis(rng.random_range(300..800)),
            _ => Duration::from_millis(rng.random_range(300..3_000)),
        };
        faults.push(Scheduled { at, lasts, fault });
        at += lasts + Duration::from_millis(rng.random_range(200..1_500));
    }
    faults
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_faults_do_not_overlap() {
        let phase = Duration::from_secs(30);
        let a = schedule(&mut StdRng::seed_from_u64(7), 5, phase);
        let b = schedule(&mut StdRng::seed_from_u64(7), 5, phase);
        assert_eq!(a, b);
        assert!(a.len() > 5, "a 30 s phase has several faults: {a:?}");
        for pair in a.windows(2) {
            assert!(pair[0].at + pair[0].lasts < pair[1].at, "{pair:?}");
        }
        for s in &a {
            if let Fault::Partition { minority, .. } = s.fault {
                assert!((1..3).contains(&minority), "a minority of five: {s:?}");
            }
        }
    }
}
