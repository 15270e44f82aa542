//! The spool's behaviour: what goes in comes back, survives reopening, and is bounded.

use super::*;
use crate::delivery::record::{DeadLetter, SpooledEvent};
use crate::event::Message;

fn event(text: &str) -> SpooledEvent {
    SpooledEvent {
        source: "webhooks.chat".into(),
        route: "shout".into(),
        message: Message::new("chat", "topic 1", text),
        next_step: 1,
        branch: Vec::new(),
        attempts: 1,
        received_ms: 5,
        last_error: None,
    }
}

fn letter(text: &str) -> DeadLetter {
    DeadLetter { event: event(text), dead_at_ms: 9, reason: "gave up".into() }
}

#[tokio::test]
async fn events_come_back_when_due_and_leave_when_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10).unwrap();
    let later = spool.insert(event("later"), 200).await.unwrap();
    let soon = spool.insert(event("soon"), 100).await.unwrap();
    assert_eq!(spool.event_count(), 2);
    let due = spool.due(150, 10).unwrap();
    assert_eq!(due, vec![(soon, event("soon"))]);
    let moved = spool.reschedule(soon, event("soon again"), 300).await.unwrap();
    assert_eq!(spool.due(250, 10).unwrap(), vec![(later, event("later"))]);
    spool.remove(later).await.unwrap();
    spool.remove(moved).await.unwrap();
    assert_eq!(spool.event_count(), 0);
    assert!(spool.pending(10).unwrap().is_empty());
}

#[tokio::test]
async fn dead_letters_can_be_replayed_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10).unwrap();
    let key = spool.insert(event("doomed"), 100).await.unwrap();
    let id = spool.bury(Some(key), letter("doomed")).await.unwrap();
    assert_eq!((spool.event_count(), spool.dead_letter_count()), (0, 1));
    assert_eq!(spool.dead_letter(id).unwrap().unwrap().reason, "gave up");
    spool.replay(id, 50).await.unwrap();
    assert_eq!((spool.event_count(), spool.dead_letter_count()), (1, 0));
    let (_, replayed) = spool.due(60, 1).unwrap().remove(0);
    assert_eq!(replayed.attempts, 0, "a replay starts its attempts afresh");
    assert_eq!(spool.replay(id, 50).await, Err(SpoolError::NoSuchDeadLetter(id)));
    spool.bury(None, letter("a")).await.unwrap();
    spool.bury(None, letter("b")).await.unwrap();
    assert_eq!(spool.purge(None).await.unwrap(), 2);
    assert_eq!(spool.dead_letter_count(), 0);
}

#[tokio::test]
async fn a_full_spool_refuses_new_events_and_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 1).unwrap();
    spool.insert(event("first"), 1).await.unwrap();
    assert_eq!(spool.insert(event("second"), 1).await, Err(SpoolError::Full));
    assert_eq!(spool.pending(10).unwrap().len(), 1);
}

#[tokio::test]
async fn what_was_committed_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer) = Spool::open(dir.path(), 10).unwrap();
    let key = spool.insert(event("kept"), 7).await.unwrap();
    let id = spool.bury(None, letter("dead")).await.unwrap();
    drop(spool);
    writer.join().unwrap();
    let (reopened, _) = Spool::open(dir.path(), 10).unwrap();
    assert_eq!((reopened.event_count(), reopened.dead_letter_count()), (1, 1));
    assert_eq!(reopened.pending(10).unwrap(), vec![(key, event("kept"))]);
    let next = reopened.insert(event("new"), 7).await.unwrap();
    assert!(next.1 > id && next.1 > key.1, "ids are never reused");
}

#[tokio::test]
async fn closing_commits_what_is_queued_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer) = Spool::open(dir.path(), 10).unwrap();
    let queued = spool.insert(event("queued"), 1);
    let (inserted, closed) = tokio::join!(queued, spool.close());
    inserted.unwrap();
    closed.unwrap();
    assert!(matches!(spool.insert(event("late"), 1).await, Err(SpoolError::Storage(_))));
    writer.join().unwrap();
    let (reopened, _) = Spool::open(dir.path(), 10).expect("the lock was released");
    assert_eq!(reopened.event_count(), 1);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), 10).unwrap();
    let second = Spool::open(dir.path(), 10).err().expect("the lock is held");
    assert!(second.to_string().contains("in use"), "{second}");
}

#[tokio::test]
async fn concurrent_inserts_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10_000).unwrap();
    let inserts = (0..200).map(|n| {
        let spool = spool.clone();
        tokio::spawn(async move { spool.insert(event(&n.to_string()), 1).await })
    });
    for insert in futures::future::join_all(inserts).await {
        insert.unwrap().unwrap();
    }
    assert_eq!(spool.event_count(), 200);
    assert!(spool.commit_count() < 200, "{} commits for 200 inserts", spool.commit_count());
}

#[tokio::test]
async fn claimed_events_are_not_due_and_a_claim_ends_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10).unwrap();
    let key = spool.insert(event("busy"), 1).await.unwrap();
    let claim = spool.claim(key.1).expect("first claim");
    assert!(spool.claim(key.1).is_none(), "one claim at a time");
    assert!(spool.due(5, 10).unwrap().is_empty());
    drop(claim);
    assert_eq!(spool.due(5, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn rescheduling_an_event_that_is_gone_does_not_bring_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10).unwrap();
    let key = spool.insert(event("done"), 1).await.unwrap();
    spool.remove(key).await.unwrap();
    assert_eq!(spool.reschedule(key, event("done"), 2).await, Err(SpoolError::NoSuchEvent(key.1)));
    assert_eq!(spool.event_count(), 0);
    assert!(spool.pending(10).unwrap().is_empty());
}

#[tokio::test]
async fn ids_are_not_reused_even_after_the_spool_empties_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, writer) = Spool::open(dir.path(), 10).unwrap();
    let first = spool.insert(event("one"), 1).await.unwrap();
    spool.remove(first).await.unwrap();
    spool.close().await.unwrap();
    writer.join().unwrap();
    let (reopened, _) = Spool::open(dir.path(), 10).unwrap();
    let second = reopened.insert(event("two"), 1).await.unwrap();
    assert!(second.1 > first.1);
}

#[tokio::test]
async fn replaying_into_a_full_spool_is_refused_and_the_letter_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 1).unwrap();
    let id = spool.bury(None, letter("waiting")).await.unwrap();
    spool.insert(event("filler"), 1).await.unwrap();
    assert_eq!(spool.replay(id, 1).await, Err(SpoolError::Full));
    assert_eq!(spool.dead_letter_count(), 1);
}

#[tokio::test]
async fn a_limit_of_zero_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), 10).unwrap();
    spool.insert(event("x"), 1).await.unwrap();
    spool.bury(None, letter("y")).await.unwrap();
    assert!(spool.pending(0).unwrap().is_empty());
    assert!(spool.dead_letters(0).unwrap().is_empty());
}

#[tokio::test]
async fn replace_swaps_an_event_for_its_branches_in_one_change_even_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _writer) = Spool::open(dir.path(), 1).unwrap();
    let key = spool.insert(event("whole"), 10).await.unwrap();
    let branch = |text: &str, path: u32| SpooledEvent { branch: vec![path], ..event(text) };
    let first_letter = spool
        .replace(Some(key), vec![(branch("b0", 0), 20), (branch("b2", 2), 30)], vec![letter("b1")])
        .await
        .unwrap();
    let pending: Vec<_> =
        spool.pending(10).unwrap().into_iter().map(|(_, event)| (event.message.text, event.branch)).collect();
    assert_eq!(pending, vec![("b0".to_string(), vec![0]), ("b2".to_string(), vec![2])]);
    assert_eq!(spool.event_count(), 2, "branches of an answered event are kept past max_events");
    assert_eq!(spool.dead_letter(first_letter).unwrap().unwrap().event.message.text, "b1");
    assert_eq!(spool.dead_letter_count(), 1);
}

#[tokio::test]
async fn relays_sharing_a_volume_take_free_slots_and_a_new_one_adopts_a_released_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_writer, first_dir) = Spool::open_free_slot(dir.path(), 2, 10).unwrap();
    let (second, _second_writer, second_dir) = Spool::open_free_slot(dir.path(), 2, 10).unwrap();
    assert_eq!(
        (first_dir.file_name().unwrap(), second_dir.file_name().unwrap()),
        ("slot-0".as_ref(), "slot-1".as_ref())
    );
    assert!(Spool::open_free_slot(dir.path(), 2, 10).is_err(), "every slot is taken");

    first.insert(event("left behind"), 0).await.unwrap();
    first.close().await.unwrap();
    first_writer.join().unwrap();
    drop(first);
    let (adopted, _writer, adopted_dir) = Spool::open_free_slot(dir.path(), 2, 10).unwrap();
    assert_eq!(adopted_dir, first_dir);
    assert_eq!(adopted.pending(10).unwrap()[0].1.message.text, "left behind");
    drop(second);
}
