//! The bound on request-body bytes held in memory at once, across every connection.
//!
//! A body is read only into a reservation: its declared `Content-Length` is reserved before a
//! byte of it is read, and a body without one is reserved frame by frame as it arrives. A
//! request that finds the budget spent is answered 503 at once, without reading on; the
//! reservation is held until the answer has been built. So the memory all bodies in flight can
//! take is this budget, whatever the number of connections.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    in_flight: Gauge,
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    in_flight: Gauge,
}

impl BodyBudget {
    pub fn new(total: usize, metrics: &Metrics) -> BodyBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        metrics
            .body_budget_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            in_flight: metrics.body_bytes_in_flight.clone(),
        }
    }

    /// `bytes` of the budget, or `None` when that much is not free right now.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut reservation = Reservation {
            permit: None,
            bytes: 0,
            in_flight: self.in_flight.clone(),
        };
        reservation.grow(self, bytes).then_some(reservation)
    }
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reserves `more` bytes on top; false (nothing reserved) when they are not free.
    pub fn grow(&mut self, budget: &BodyBudget, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        let Ok(permits) = u32::try_from(more) else {
            return false;
        };
        let Ok(permit) = Arc::clone(&budget.bytes).try_acquire_many_owned(permits) else {
            return false;
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.bytes += more;
        self.in_flight
            .inc_by(i64::try_from(more).unwrap_or(i64::MAX));
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.in_flight
            .dec_by(i64::try_from(self.bytes).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn reservations_never_exceed_the_budget_and_come_back_when_dropped() {
        let metrics = Metrics::new(&mut Registry::default());
        let budget = BodyBudget::new(10, &metrics);
        let mut first = budget.reserve(6).expect("free");
        assert!(budget.reserve(5).is_none(), "only 4 left");
        let second = budget.reserve(4).expect("the rest");
        assert!(!first.grow(&budget, 1), "spent");
        assert_eq!(metrics.body_bytes_in_flight.get(), 10);
        drop(second);
        assert!(first.grow(&budget, 3));
        assert_eq!(first.bytes(), 9);
        assert_eq!(metrics.body_bytes_in_flight.get(), 9);
        drop(first);
        assert_eq!(metrics.body_bytes_in_flight.get(), 0);
        assert!(budget.reserve(10).is_some());
    }
}
