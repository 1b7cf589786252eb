//! A small fork–join team for splitting one row over threads (B < cores,
//! typically B = 1 in a decode loop).
//!
//! Rayon's `install` from a thread outside the pool costs two thread
//! wake-ups per call (hand the job to a worker, wake the caller when it is
//! done): 15–70 µs on a small VM, as much as a whole 32k-logit row. A row's
//! passes are short (tens of µs each), so the team works differently:
//!
//! * the **caller works too**: it opens a job, wakes any parked helper and
//!   starts claiming chunks at once, so a helper that wakes late only takes
//!   fewer chunks — its wake-up latency overlaps the caller's work;
//! * a job is **closed** by the caller once every chunk is claimed; a helper
//!   that arrives after that never touches it, and the caller waits (spinning)
//!   only for helpers still inside, i.e. for a chunk in progress;
//! * helpers **spin** for a short while (`SPIN`) after each job before they
//!   park, so the next pass of the same row finds them awake.
//!
//! Results come back in chunk order whatever thread ran each chunk, so sums
//! reduced from them do not depend on scheduling.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a helper stays awake, polling for the next job, after one ends.
const SPIN: Duration = Duration::from_micros(50);

/// `gate`: this bit set = a job is open; the bits below count helpers inside.
const OPEN: usize = 1 << (usize::BITS - 1);

type Job<'a> = &'a (dyn Fn() + Sync);

struct Shared {
    gate: AtomicUsize,
    /// Points at a `Job` on the caller's stack while the gate is open.
    job: AtomicPtr<()>,
    epoch: AtomicU64,
    stop: AtomicBool,
    sleeping: Vec<AtomicBool>,
    /// Set when a job body panicked on a helper.
    panicked: AtomicBool,
}

/// The caller plus `helpers` parked threads.
pub struct Team {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    busy: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Team {
    /// A team of the calling thread and `helpers` more (0 helpers: every job
    /// runs on the caller alone). Fails only if a thread cannot be spawned.
    pub fn new(helpers: usize) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            gate: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            epoch: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sleeping: (0..helpers).map(|_| AtomicBool::new(false)).collect(),
            panicked: AtomicBool::new(false),
        });
        let mut team = Team {
            shared: shared.clone(),
            threads: Vec::new(),
            handles: Vec::new(),
            busy: Mutex::new(()),
        };
        for i in 0..helpers {
            let sh = shared.clone();
            let h = thread::Builder::new()
                .name(format!("token-sampler-team-{i}"))
                .spawn(move || helper(&sh, i))?;
            team.threads.push(h.thread().clone());
            team.handles.push(h);
        }
        Ok(team)
    }

    /// Threads that work on a job: the caller and the helpers.
    pub fn size(&self) -> usize {
        self.handles.len() + 1
    }

    /// Runs `work` on the caller and on every helper that joins before the
    /// caller's own call returns; returns when no helper is inside it any more.
    /// `work` must itself hand out the pieces (each call claims until none
    /// are left), so it is correct whoever joins.
    fn run(&self, work: Job<'_>) {
        let _busy = lock(&self.busy);
        let sh = &*self.shared;
        if !self.handles.is_empty() {
            let job: Job<'_> = work;
            sh.job
                .store(&job as *const Job<'_> as *mut (), Ordering::Relaxed);
            sh.gate.store(OPEN, Ordering::Release);
            sh.epoch.fetch_add(1, Ordering::SeqCst);
            for (t, s) in self.threads.iter().zip(&sh.sleeping) {
                if s.load(Ordering::SeqCst) {
                    t.unpark();
                }
            }
            let mine = catch_unwind(AssertUnwindSafe(work));
            // Close the job, then wait for the helpers inside: `job` (on this
            // stack) must outlive every use of it.
            sh.gate.fetch_and(!OPEN, Ordering::AcqRel);
            let t0 = Instant::now();
            while sh.gate.load(Ordering::Acquire) != 0 {
                if t0.elapsed() < Duration::from_millis(1) {
                    std::hint::spin_loop();
                } else {
                    thread::yield_now();
                }
            }
            sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
            if let Err(p) = mine {
                resume_unwind(p);
            }
        } else {
            work();
        }
        if sh.panicked.swap(false, Ordering::Relaxed) {
            panic!("a token-sampler team thread panicked");
        }
    }

    /// `f` over `items`, spread over the team; results in item order.
    pub fn map<I: Send, R: Send>(&self, items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
        let n = items.len();
        let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
        let outs: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            if let Some(item) = lock(&slots[i]).take() {
                let r = f(item);
                *lock(&outs[i]) = Some(r);
            }
        };
        self.run(&work);
        outs.into_iter()
            .map(|o| {
                o.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .expect("every item ran")
            })
            .collect()
    }
}

fn helper(sh: &Shared, me: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new job: spin a while, then park.
        let mut idle_since = Instant::now();
        loop {
            if sh.stop.load(Ordering::Acquire) {
                return;
            }
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if idle_since.elapsed() < SPIN {
                // Yield between polls: a helper that shares a core with the
                // caller must not take its time slice.
                thread::yield_now();
                continue;
            }
            sh.sleeping[me].store(true, Ordering::SeqCst);
            if sh.epoch.load(Ordering::SeqCst) == seen && !sh.stop.load(Ordering::SeqCst) {
                thread::park();
            }
            sh.sleeping[me].store(false, Ordering::SeqCst);
            idle_since = Instant::now();
        }
        // Enter the job if it is still open.
        let mut g = sh.gate.load(Ordering::Acquire);
        while g & OPEN != 0 {
            match sh
                .gate
                .compare_exchange_weak(g, g + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    let p = sh.job.load(Ordering::Relaxed) as *const Job<'static>;
                    // SAFETY: the gate was open when we entered, so `p` points
                    // at the caller's `Job`, which lives until the caller has
                    // seen us leave (gate count back to 0).
                    let job: Job<'_> = unsafe { *p };
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        sh.panicked.store(true, Ordering::Relaxed);
                    }
                    sh.gate.fetch_sub(1, Ordering::Release);
                    break;
                }
                Err(now) => g = now,
            }
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in &self.threads {
            t.unpark();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_returns_results_in_item_order_for_any_team_size() {
        for helpers in 0..4 {
            let team = Team::new(helpers).unwrap();
            for n in [0usize, 1, 2, 7, 64] {
                let out = team.map((0..n).collect(), |i| i * i);
                assert_eq!(
                    out,
                    (0..n).map(|i| i * i).collect::<Vec<_>>(),
                    "helpers {helpers} n {n}"
                );
            }
        }
    }

    #[test]
    fn borrowed_mutable_chunks_are_each_written_once() {
        let team = Team::new(1).unwrap();
        let mut data = vec![0u32; 10_000];
        for round in 1..200u32 {
            let sums = team.map(data.chunks_mut(97).collect(), |c: &mut [u32]| {
                c.iter_mut().for_each(|v| *v += 1);
                c.len()
            });
            assert_eq!(sums.iter().sum::<usize>(), 10_000);
            assert!(data.iter().all(|&v| v == round));
            // Let the helper park now and then, so both paths are exercised.
            if round % 50 == 0 {
                thread::sleep(Duration::from_millis(2));
            }
        }
    }

    #[test]
    fn a_panicking_item_reaches_the_caller_and_the_team_still_works() {
        let team = Team::new(1).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.map((0..8).collect(), |i: i32| {
                if i == 5 {
                    panic!("boom");
                }
                i
            })
        }));
        assert!(r.is_err());
        assert_eq!(team.map((0..4).collect(), |i: i32| i + 1), vec![1, 2, 3, 4]);
    }
}
