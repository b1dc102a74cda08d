//! [`TodoFeed`]: the tasks a (resumed) local run still has to do, fed one at a time to
//! the supervisor's window.

use std::sync::Arc;

use super::resume::Plan;
use super::task_list::TaskCommands;
use crate::supervisor::FedTask;

/// The tasks to run, in task order (or `order`'s, for `--shuf`), each with what
/// earlier runs did of it ([`Plan::todo_entry`]), one at a time for the supervisor's
/// window. The feed ends early at a task whose command cannot be read back (a list
/// changed under the run). A resumed task keeps its own failures and crashes, so `--max-attempts` and
/// `--max-worker-crashes` hold across resumes.
#[derive(Debug)]
pub struct TodoFeed<L> {
    tasks: Arc<L>,
    plan: Arc<Plan>,
    /// `--shuf`: the task numbers to run, shuffled.
    order: Option<Vec<u32>>,
    /// The next index into `order`, or into the task list's numbers.
    at: usize,
}

impl<L> TodoFeed<L> {
    /// The tasks of `tasks` that `plan` runs, in `order` when given (`--shuf`: the
    /// task numbers to run, in the order to run them), else in task order.
    pub fn new(tasks: Arc<L>, plan: Arc<Plan>, order: Option<Vec<u32>>) -> Self {
        Self {
            tasks,
            plan,
            order,
            at: 0,
        }
    }
}

impl<L: TaskCommands> Iterator for TodoFeed<L> {
    type Item = FedTask<String>;

    fn next(&mut self) -> Option<FedTask<String>> {
        loop {
            let n = match &self.order {
                Some(order) => *order.get(self.at)?,
                None => self.tasks.number_at(self.at)?,
            };
            self.at += 1;
            if let Some((n, made, own, crashes)) = self.plan.todo_entry(n) {
                // A command that cannot be read back (the list was changed under the
                // run) is never run as something else, an empty command included: the
                // feed ends there, and the caller reports the change.
                let command = self.tasks.command(n)?.into_owned();
                let made = made.max(own.saturating_add(crashes));
                return Some(FedTask::resumed(u64::from(n), made, own, crashes, command));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// Tasks 1..=4, `echo N`.
    struct Four;

    impl TaskCommands for Four {
        fn fingerprint(&self) -> u64 {
            4
        }
        fn len(&self) -> usize {
            4
        }
        fn max_number(&self) -> u32 {
            4
        }
        fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
            1..=4
        }
        fn number_at(&self, i: usize) -> Option<u32> {
            (i < 4).then(|| i as u32 + 1)
        }
        fn index_of(&self, n: u32) -> Option<usize> {
            (1..=4).contains(&n).then(|| n as usize - 1)
        }
        fn command(&self, n: u32) -> Option<Cow<'_, str>> {
            self.index_of(n).map(|_| Cow::Owned(format!("echo {n}")))
        }
    }

    fn fed(order: Option<Vec<u32>>) -> Vec<(u64, u32, u32, u32, String)> {
        let mut plan = Plan::default();
        plan.skip.insert(2);
        // Two attempts made, one own failure, one crash.
        plan.started.insert(3, (2, 1, 1));
        TodoFeed::new(Arc::new(Four), Arc::new(plan), order)
            .map(|t| (t.key, t.attempts_made, t.own_failures, t.crashes, t.payload))
            .collect()
    }

    #[test]
    fn feeds_the_plan_s_tasks_in_order_with_what_earlier_runs_did() {
        assert_eq!(
            fed(None),
            vec![
                (1, 0, 0, 0, "echo 1".to_string()),
                (3, 2, 1, 1, "echo 3".to_string()),
                (4, 0, 0, 0, "echo 4".to_string()),
            ]
        );
        let keys: Vec<u64> = fed(Some(vec![4, 2, 1, 3])).iter().map(|t| t.0).collect();
        assert_eq!(keys, vec![4, 1, 3]);
    }
}
