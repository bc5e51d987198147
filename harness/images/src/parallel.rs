//! Work spread over every core, with results handed on in the order of the work.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::Result;

/// Apply `work` to every item on all cores, giving each result to `sink` in the items' order.
/// The first error, from either, stops the rest and is returned.
pub(crate) fn map_in_order<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R> + Sync,
    mut sink: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Bounded, so workers cannot run far ahead of a slow sink.
        let (tx, rx) = mpsc::sync_channel(threads * 2);
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                // A closed channel means the sink gave up: stop.
                if tx.send((i, work(item))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Results arrive in completion order; hold the early ones until their turn.
        let mut early = BTreeMap::new();
        let mut want = 0;
        for (i, result) in rx {
            early.insert(i, result);
            while let Some(result) = early.remove(&want) {
                sink(result?)?;
                want += 1;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn results_reach_the_sink_in_the_items_order() {
        let items: Vec<u64> = (0..500).collect();
        let mut seen = Vec::new();
        map_in_order(
            &items,
            |&i| {
                // Uneven work, so results finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((i * 7919) % 300));
                Ok(i * 2)
            },
            |r| {
                seen.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_stops_the_work() {
        let items: Vec<u32> = (0..10_000).collect();
        let done = AtomicUsize::new(0);
        let err = map_in_order(
            &items,
            |&i| {
                done.fetch_add(1, Ordering::Relaxed);
                if i == 10 {
                    Err(Error::Other("bad item".into()))
                } else {
                    Ok(i)
                }
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "bad item");
        assert!(done.load(Ordering::Relaxed) < items.len());
    }
}
