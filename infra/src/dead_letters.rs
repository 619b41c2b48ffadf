//! `<process> dead-letters list|replay|purge`: one way for every consumer
//! group to look at its dead letters (why each failed, how many times),
//! move them back once the cause is fixed, or delete them. Every action
//! reads the dead-letter queue in place (`bus::sweep`): listing leaves it
//! as it was, in its order. It declares nothing: the queues are the
//! consumer's, with the consumer's arguments.

use anyhow::Context;
use bus::{ConsumerGroup, DeadLetter, Disposal, Topology};
use clap::{Args, Subcommand};

use crate::settings::CommonSettings;

/// The `dead-letters` subcommand of a consuming process.
#[derive(Args, Clone, Debug)]
pub struct DeadLetters {
    #[command(subcommand)]
    pub action: DeadLetterAction,
}

#[derive(Subcommand, Clone, Debug)]
pub enum DeadLetterAction {
    /// List each dead letter: id, event type, how many times it failed and
    /// was dead-lettered, and why. Leaves the queue as it was.
    List {
        #[command(flatten)]
        select: Selection,
    },
    /// Move dead letters back to their queue (after fixing what made them fail).
    Replay {
        #[command(flatten)]
        select: Selection,
    },
    /// Delete dead letters for good.
    Purge {
        #[command(flatten)]
        select: Selection,
    },
}

/// Which dead letters an action takes.
#[derive(Args, Clone, Debug)]
pub struct Selection {
    /// Only this consumer group's (e.g. `worker.lockout`; the queue's full
    /// name works too); every group of the process when left out.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only the message with this id (the event id).
    #[arg(long)]
    pub id: Option<String>,
    /// Most messages taken per queue.
    #[arg(long, default_value_t = 10_000)]
    pub max: usize,
}

/// `--queue` names no group of this process.
#[derive(Debug, thiserror::Error)]
#[error("no consumer group {queue} here; this process consumes {known}")]
pub struct UnknownQueue {
    pub queue: String,
    pub known: String,
}

/// `--id` matched no dead letter.
#[derive(Debug, thiserror::Error)]
#[error("no dead letter with id {id} in {queues}")]
pub struct NoSuchDeadLetter {
    pub id: String,
    pub queues: String,
}

impl DeadLetters {
    /// Runs the action on the dead letters of `groups` (the process's
    /// consumer groups), printing what it found or did.
    pub async fn run(
        &self,
        common: &CommonSettings,
        groups: &[ConsumerGroup],
    ) -> anyhow::Result<()> {
        let (select, disposal) = match &self.action {
            DeadLetterAction::List { select } => (select, Disposal::Keep),
            DeadLetterAction::Replay { select } => (select, Disposal::Replay),
            DeadLetterAction::Purge { select } => (select, Disposal::Purge),
        };
        let topology = common.topology();
        let chosen = select.groups(&topology, groups)?;
        let connection = crate::broker::connect(&common.amqp_url)
            .await
            .context("connecting to the broker")?;
        let mut matched = 0;
        for group in chosen {
            let swept = bus::sweep(&connection, &topology, group, select.max, |letter| {
                select.disposal(letter, disposal)
            })
            .await
            .with_context(|| format!("reading {}", topology.dead_letter_queue_name(group)))?;
            matched += report(&topology, group, select, &swept, disposal);
        }
        match &select.id {
            Some(id) if matched == 0 => Err(NoSuchDeadLetter {
                id: id.clone(),
                queues: names(groups),
            }
            .into()),
            _ => Ok(()),
        }
    }
}

impl Selection {
    fn groups<'a>(
        &self,
        topology: &Topology,
        groups: &'a [ConsumerGroup],
    ) -> Result<Vec<&'a ConsumerGroup>, UnknownQueue> {
        let Some(queue) = &self.queue else {
            return Ok(groups.iter().collect());
        };
        let found = groups.iter().find(|group| {
            [
                group.name.clone(),
                topology.queue_name(group),
                topology.dead_letter_queue_name(group),
            ]
            .contains(queue)
        });
        found.map(|group| vec![group]).ok_or_else(|| UnknownQueue {
            queue: queue.clone(),
            known: names(groups),
        })
    }

    fn selects(&self, letter: &DeadLetter) -> bool {
        self.id
            .as_ref()
            .is_none_or(|id| letter.message_id.as_ref() == Some(id))
    }

    /// `disposal` for a selected letter; any other stays where it is.
    fn disposal(&self, letter: &DeadLetter, disposal: Disposal) -> Disposal {
        match self.selects(letter) {
            true => disposal,
            false => Disposal::Keep,
        }
    }
}

fn names(groups: &[ConsumerGroup]) -> String {
    let names: Vec<&str> = groups.iter().map(|group| group.name.as_str()).collect();
    names.join(", ")
}

/// Prints the letters the action selected; returns how many.
fn report(
    topology: &Topology,
    group: &ConsumerGroup,
    select: &Selection,
    swept: &[(DeadLetter, Disposal)],
    disposal: Disposal,
) -> usize {
    let dead_queue = topology.dead_letter_queue_name(group);
    let taken: Vec<&DeadLetter> = swept
        .iter()
        .map(|(letter, _)| letter)
        .filter(|letter| select.selects(letter))
        .collect();
    let verb = match disposal {
        Disposal::Keep => "dead letters in",
        Disposal::Replay => "replayed to",
        Disposal::Purge => "purged from",
    };
    let target = match disposal {
        Disposal::Replay => topology.queue_name(group),
        _ => dead_queue,
    };
    println!("{} {verb} {target}", taken.len());
    for letter in &taken {
        println!("  {}", line(letter));
    }
    taken.len()
}

/// `<id>  <event type>  failed <n>x  dead-lettered <d>x  <reason>`.
fn line(letter: &DeadLetter) -> String {
    format!(
        "{}  {}  failed {}x  dead-lettered {}x  {}",
        letter.message_id.as_deref().unwrap_or("-"),
        letter.event_type.as_deref().unwrap_or("-"),
        letter.failures,
        letter.deaths,
        letter.reason,
    )
}
