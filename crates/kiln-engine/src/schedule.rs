//! Runs the planned stages, each on its own thread as soon as the stages it
//! depends on are done, so independent stages build in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

/// Results of finished stages, by stage index, shared between stage threads.
pub struct Board<T> {
    state: Mutex<BoardState<T>>,
    changed: Condvar,
}

struct BoardState<T> {
    done: HashMap<usize, Arc<T>>,
    /// Stages built on demand, claimed by the thread that builds them.
    claimed: HashSet<usize>,
    /// Set when any stage failed: the others stop waiting.
    failed: bool,
}

impl<T> Board<T> {
    pub fn new() -> Self {
        Board {
            state: Mutex::new(BoardState {
                done: HashMap::new(),
                claimed: HashSet::new(),
                failed: false,
            }),
            changed: Condvar::new(),
        }
    }

    pub fn publish(&self, stage: usize, result: T) {
        let mut s = self.state.lock().unwrap();
        s.done.insert(stage, Arc::new(result));
        self.changed.notify_all();
    }

    pub fn fail(&self) {
        self.state.lock().unwrap().failed = true;
        self.changed.notify_all();
    }

    pub fn has_failed(&self) -> bool {
        self.state.lock().unwrap().failed
    }

    /// Claims `stage` for building on demand: `true` for the first caller
    /// only (the others wait for its result).
    pub fn claim(&self, stage: usize) -> bool {
        self.state.lock().unwrap().claimed.insert(stage)
    }

    /// The result of `stage` if it is done, without waiting.
    pub fn get(&self, stage: usize) -> Option<Arc<T>> {
        self.state.lock().unwrap().done.get(&stage).cloned()
    }

    /// Waits for `stage`; `None` if the build failed meanwhile.
    pub fn wait(&self, stage: usize) -> Option<Arc<T>> {
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some(r) = s.done.get(&stage) {
                return Some(r.clone());
            }
            if s.failed {
                return None;
            }
            s = self.changed.wait(s).unwrap();
        }
    }
}

impl<T> Default for Board<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `build(stage)` for every stage on its own thread; the first error
/// stops the others at their next wait and is returned.
pub fn run_all<T: Send + Sync, E: Send>(
    stages: &[usize],
    board: &Board<T>,
    build: impl Fn(usize) -> Result<T, E> + Sync,
) -> Result<(), E> {
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for &stage in stages {
            let build = &build;
            let first_error = &first_error;
            scope.spawn(move || match build(stage) {
                Ok(result) => board.publish(stage, result),
                Err(e) => {
                    first_error.lock().unwrap().get_or_insert(e);
                    board.fail();
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn dependencies_finish_first_and_independent_stages_overlap() {
        // 0 and 1 are independent; 2 needs both.
        let board = Board::new();
        let running = AtomicUsize::new(0);
        let max_running = AtomicUsize::new(0);
        let order = Mutex::new(Vec::new());
        run_all::<usize, ()>(&[0, 1, 2], &board, |s| {
            if s == 2 {
                board.wait(0).unwrap();
                board.wait(1).unwrap();
            }
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max_running.fetch_max(now, Ordering::SeqCst);
            // Let the other independent stage start before this one ends.
            if s < 2 {
                for _ in 0..200 {
                    if max_running.load(Ordering::SeqCst) >= 2 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            order.lock().unwrap().push(s);
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(s * 10)
        })
        .unwrap();
        assert_eq!(order.lock().unwrap().last(), Some(&2));
        assert_eq!(max_running.load(Ordering::SeqCst), 2);
        assert_eq!(*board.wait(2).unwrap(), 20);
    }

    #[test]
    fn a_stage_is_claimed_once() {
        let board: Board<()> = Board::new();
        assert!(board.claim(3));
        assert!(!board.claim(3));
        assert!(board.claim(4));
    }

    #[test]
    fn a_failure_releases_waiters() {
        let board: Board<()> = Board::new();
        let r = run_all(&[0, 1], &board, |s| {
            if s == 0 {
                Err("boom")
            } else {
                board.wait(0).ok_or("dependency failed")?;
                Ok(())
            }
        });
        assert_eq!(r, Err("boom"));
    }
}
