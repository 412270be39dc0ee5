//! How many objects are copied at once, adapting to the services: additive increase,
//! multiplicative decrease. The limit starts at `--transfers`; when a service answered 429/503
//! while an object was being copied, the limit halves (at least 1), and after as many clean
//! objects as the limit it grows by one, back up to `--transfers`.

use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct Gate {
    sem: Arc<Semaphore>,
    max: usize,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    lowest: usize,
    /// Permits still to be withdrawn after a decrease (taken back as objects finish).
    debt: usize,
    /// Clean objects since the last change.
    clean: usize,
    /// The throttle count when the last decrease happened.
    seen: u64,
}

/// An object's place under the limit, and the throttle count when it got it.
pub(crate) struct Slot {
    permit: OwnedSemaphorePermit,
    throttles_at_start: u64,
}

impl Gate {
    pub(crate) fn new(max: usize, throttles_now: u64) -> Gate {
        let max = max.max(1);
        Gate {
            sem: Arc::new(Semaphore::new(max)),
            max,
            state: Mutex::new(State { limit: max, lowest: max, debt: 0, clean: 0, seen: throttles_now }),
        }
    }

    /// Waits for a place under the current limit.
    pub(crate) async fn enter(&self, throttles_now: u64) -> Slot {
        let permit = self.sem.clone().acquire_owned().await.expect("the gate's semaphore is never closed");
        Slot { permit, throttles_at_start: throttles_now }
    }

    /// Gives the place back, adapting the limit to whether the services pushed back while the
    /// object was copied (`throttles_now` against the count when it entered).
    pub(crate) fn leave(&self, slot: Slot, throttles_now: u64) {
        let mut s = self.state.lock().expect("gate lock");
        // Pushed back while this object was copied; halved once per new pushback, however many
        // objects were in flight during it.
        let saw_throttling = throttles_now > slot.throttles_at_start;
        let pushed_back = saw_throttling && throttles_now > s.seen;
        if pushed_back {
            s.seen = throttles_now;
            s.clean = 0;
            let new = (s.limit / 2).max(1);
            s.debt += s.limit - new;
            s.limit = new;
            s.lowest = s.lowest.min(new);
        } else if !saw_throttling {
            s.clean += 1;
        }
        if s.debt > 0 {
            s.debt -= 1;
            slot.permit.forget();
        } else {
            drop(slot.permit);
            if s.clean >= s.limit && s.limit < self.max {
                s.clean = 0;
                s.limit += 1;
                self.sem.add_permits(1);
            }
        }
    }

    /// The lowest limit this gate came down to.
    pub(crate) fn lowest(&self) -> usize {
        self.state.lock().expect("gate lock").lowest
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state.lock().expect("gate lock").limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushback_halves_the_limit_and_clean_objects_raise_it_one_at_a_time() {
        let gate = Gate::new(8, 0);
        let slots: Vec<Slot> = futures::future::join_all((0..8).map(|_| gate.enter(0))).await;
        assert_eq!(gate.sem.available_permits(), 0);
        let mut slots = slots.into_iter();
        // One object saw a 429: 8 → 4, and the places over the new limit are withdrawn as
        // objects finish.
        gate.leave(slots.next().unwrap(), 1);
        assert_eq!((gate.limit(), gate.lowest()), (4, 4));
        for slot in slots.by_ref().take(3) {
            gate.leave(slot, 1);
        }
        assert_eq!(gate.sem.available_permits(), 0, "4 in flight, 4 withdrawn");
        // Objects that started before the pushback and finish after it do not halve again.
        for slot in slots {
            gate.leave(slot, 1);
        }
        assert_eq!(gate.limit(), 4);
        assert_eq!(gate.sem.available_permits(), 4);
        // Four clean objects raise the limit by one.
        for _ in 0..4 {
            let slot = gate.enter(1).await;
            gate.leave(slot, 1);
        }
        assert_eq!((gate.limit(), gate.sem.available_permits()), (5, 5));
        // A new pushback halves again, never below one.
        for t in 2..10 {
            let slot = gate.enter(t - 1).await;
            gate.leave(slot, t);
        }
        assert_eq!((gate.limit(), gate.lowest()), (1, 1));
    }
}
