//! Running one fallible job per item on all cores, for the two hot loops: copying a tree and
//! hashing it. Threads pull the next index from a shared counter, so one large file does not
//! hold up a whole pre-assigned share; the first error stops the rest.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Applies `job` to every item on up to `available_parallelism` threads (at least two: the
/// work is I/O as much as CPU) and returns the results in item order. `scratch` makes one
/// reusable buffer per thread.
pub(crate) fn map<T: Sync, R: Send, S>(
    items: &[T],
    scratch: impl Fn() -> S + Sync,
    job: impl Fn(&T, &mut S) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get().clamp(2, 16))
        .min(items.len().max(1));
    let done: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = scratch();
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else { break };
                        match job(item, &mut state) {
                            Ok(result) => done.push((index, result)),
                            Err(err) => {
                                failure.lock().unwrap().get_or_insert(err);
                                next.store(items.len(), Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker thread panicked"))
            .collect()
    });
    if let Some(err) = failure.into_inner().unwrap() {
        return Err(err);
    }
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    for (index, result) in done.into_iter().flatten() {
        slots[index] = Some(result);
    }
    Ok(slots
        .into_iter()
        .map(|r| r.expect("every item done"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_stops_on_error() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map(&items, || (), |i, ()| Ok(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = map(
            &items,
            || (),
            |i, ()| {
                if *i == 500 {
                    Err(Error::Build("boom".into()))
                } else {
                    Ok(*i)
                }
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert!(
            map(&[] as &[u32], || (), |i, ()| Ok(*i))
                .unwrap()
                .is_empty()
        );
    }
}
