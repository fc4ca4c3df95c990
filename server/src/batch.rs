//! Group commit's shared step: take whatever has queued for a writer, up to a limit, and on
//! shutdown stop taking new work while still handing out what was queued before.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The next group for a writer: waits for one item, then takes what else is queued, up to
/// `max`. Once `stop` is cancelled the queue is closed (senders are refused) and what it still
/// holds comes out in further groups; `None` when it is empty and closed.
pub async fn next_group<T>(
    rx: &mut mpsc::Receiver<T>,
    stop: &CancellationToken,
    max: usize,
) -> Option<Vec<T>> {
    if stop.is_cancelled() {
        rx.close();
    }
    let first = if rx.is_closed() {
        rx.recv().await?
    } else {
        // Biased so a stop is seen before queued work: once stopped, the queue closes first
        // and only what it already holds still comes out.
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                rx.close();
                rx.recv().await?
            }
            first = rx.recv() => first?,
        }
    };
    let mut group = vec![first];
    while group.len() < max {
        match rx.try_recv() {
            Ok(item) => group.push(item),
            Err(_) => break,
        }
    }
    Some(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stopped_writer_still_gets_what_was_queued_and_refuses_the_rest() {
        let (tx, mut rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        for i in 0..5 {
            tx.send(i).await.expect("room");
        }
        assert_eq!(next_group(&mut rx, &stop, 3).await, Some(vec![0, 1, 2]));
        stop.cancel();
        assert_eq!(next_group(&mut rx, &stop, 3).await, Some(vec![3, 4]));
        assert!(tx.send(5).await.is_err(), "closed to new work");
        assert_eq!(next_group(&mut rx, &stop, 3).await, None);
    }
}
