//! An event's lines of processing. An event starts as one branch; a step that fans out
//! replaces its branch with several, and each runs the remaining steps on its own.

use super::{StepError, StepFailure};
use crate::event::Message;

/// How a branch ended.
#[derive(Debug)]
pub enum Ended {
    /// Every step ran.
    Completed,
    /// A step dropped the message (or fanned it out into nothing).
    Dropped {
        /// Index of the step that dropped it.
        step: usize,
        /// Why, as the step said.
        reason: String,
    },
    /// A step failed; the branch's message is as it was before that step.
    Failed(StepFailure),
}

/// One line of processing: a message, the step it runs next, and how it ended.
#[derive(Debug)]
pub struct Branch {
    /// The message as it is before `next_step`.
    pub message: Message,
    /// The step to run next; earlier steps succeeded on this branch.
    pub next_step: usize,
    /// Where the branch sits: empty for the event itself, `[2]` for the third branch of the
    /// first fan-out, `[2, 0]` for the first branch that one fanned out into.
    pub path: Vec<u32>,
    /// `None` while steps remain (or the run was cut off).
    pub ended: Option<Ended>,
    /// What the step at `next_step` fanned out into, not yet made branches.
    pub(super) fanned_out: Option<Vec<Message>>,
}

/// The branches of one event's run. It stays consistent whenever the run is cut off (its
/// future dropped when the time budget runs out), so each unfinished branch can resume
/// where it stopped.
#[derive(Debug)]
pub struct Run {
    branches: Vec<Branch>,
}

impl Run {
    /// A run of `message` from step `next_step`, as branch `path` (empty for a whole event).
    pub fn new(message: Message, next_step: usize, path: Vec<u32>) -> Self {
        Run { branches: vec![Branch { message, next_step, path, ended: None, fanned_out: None }] }
    }

    /// The branches, every fan-out already applied.
    pub fn into_branches(mut self, max_branches: usize) -> Vec<Branch> {
        self.apply_fan_outs(max_branches);
        self.branches
    }

    /// Replaces each branch that fanned out with its children, which continue at the step
    /// after the fan-out. A fan-out that would take the event past `max_branches` fails its
    /// step for good instead.
    pub(super) fn apply_fan_outs(&mut self, max_branches: usize) {
        let mut index = 0;
        while index < self.branches.len() {
            let Some(children) = self.branches[index].fanned_out.take() else {
                index += 1;
                continue;
            };
            let total = self.branches.len() - 1 + children.len();
            let branch = &mut self.branches[index];
            if total > max_branches {
                branch.ended = Some(Ended::Failed(StepFailure {
                    step: branch.next_step,
                    kind: "fan-out".into(),
                    error: StepError::Failed(format!(
                        "fanning out into {} branches would give the event {total}, more than \
                         max_branches = {max_branches}",
                        children.len()
                    )),
                }));
                index += 1;
                continue;
            }
            let step = branch.next_step + 1;
            let path = branch.path.clone();
            if children.is_empty() {
                branch.ended =
                    Some(Ended::Dropped { step: branch.next_step, reason: "fanned out into nothing".into() });
                index += 1;
                continue;
            }
            let made: Vec<Branch> = children
                .into_iter()
                .enumerate()
                .map(|(position, message)| {
                    let mut path = path.clone();
                    path.push(position as u32);
                    Branch { message, next_step: step, path, ended: None, fanned_out: None }
                })
                .collect();
            let count = made.len();
            self.branches.splice(index..=index, made);
            index += count;
        }
    }

    /// The branches still to run, for the pipeline.
    pub(super) fn unfinished(&mut self) -> impl Iterator<Item = &mut Branch> {
        self.branches.iter_mut().filter(|branch| branch.ended.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanned(run: &mut Run, index: usize, texts: &[&str]) {
        run.branches[index].fanned_out =
            Some(texts.iter().map(|text| Message::new("c", "t", text)).collect());
    }

    #[test]
    fn a_fan_out_becomes_branches_at_the_next_step_with_their_paths() {
        let mut run = Run::new(Message::new("c", "t", "x"), 2, vec![]);
        fanned(&mut run, 0, &["a", "b"]);
        let branches = run.into_branches(10);
        let seen: Vec<_> =
            branches.iter().map(|b| (b.message.text.as_str(), b.next_step, b.path.clone())).collect();
        assert_eq!(seen, vec![("a", 3, vec![0]), ("b", 3, vec![1])]);
    }

    #[test]
    fn nested_fan_outs_extend_the_path_and_keep_order() {
        let mut run = Run::new(Message::new("c", "t", "x"), 0, vec![4]);
        fanned(&mut run, 0, &["a", "b"]);
        run.apply_fan_outs(10);
        fanned(&mut run, 1, &["b1", "b2"]);
        let paths: Vec<_> = run.into_branches(10).into_iter().map(|b| b.path).collect();
        assert_eq!(paths, vec![vec![4, 0], vec![4, 1, 0], vec![4, 1, 1]]);
    }

    #[test]
    fn a_fan_out_past_the_limit_fails_its_step_and_keeps_the_message() {
        let mut run = Run::new(Message::new("c", "t", "x"), 1, vec![]);
        fanned(&mut run, 0, &["a", "b", "c"]);
        let branches = run.into_branches(2);
        assert_eq!(branches.len(), 1);
        assert_eq!(branches[0].message.text, "x");
        let Some(Ended::Failed(failure)) = &branches[0].ended else { panic!("{:?}", branches[0].ended) };
        assert_eq!(failure.step, 1);
        assert!(!failure.error.is_retryable());
    }

    #[test]
    fn fanning_out_into_nothing_drops_the_branch() {
        let mut run = Run::new(Message::new("c", "t", "x"), 0, vec![]);
        fanned(&mut run, 0, &[]);
        assert!(matches!(run.into_branches(5)[0].ended, Some(Ended::Dropped { step: 0, .. })));
    }
}
