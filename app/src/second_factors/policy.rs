//! What the operator asks of second factors: how recently a person must
//! have proved one to run a sensitive command (step-up), and which
//! permissions a person may hold only with a factor enrolled.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use domain::Permission;

#[derive(Debug, Clone)]
pub struct SecondFactorPolicy {
    /// How long a proved second factor lets sensitive commands run.
    pub step_up_max_age: TimeDelta,
    /// Holders of any of these must enrol a factor before anything else.
    pub required_for: BTreeSet<Permission>,
}

/// Where a person stands with the second factor, as a request sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUp {
    /// Sensitive commands run: the person has no factor to prove (the
    /// enrolment policy governs that), or proved one recently enough.
    Satisfied,
    /// The person has a factor and has not proved it within the maximum
    /// age: sensitive commands answer `step-up-required`.
    Required { max_age: TimeDelta },
}

impl SecondFactorPolicy {
    /// The step-up standing of a person who has `enrolled` a factor and
    /// last proved one at `proved_at`.
    pub fn step_up(
        &self,
        enrolled: bool,
        proved_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StepUp {
        let fresh = proved_at.is_some_and(|at| now - at <= self.step_up_max_age && at <= now);
        if !enrolled || fresh {
            StepUp::Satisfied
        } else {
            StepUp::Required {
                max_age: self.step_up_max_age,
            }
        }
    }

    /// The first permission of `held` that obliges a person without a
    /// factor to enrol one.
    pub fn enrolment_required_by(
        &self,
        held: &BTreeSet<Permission>,
        enrolled: bool,
    ) -> Option<Permission> {
        if enrolled {
            return None;
        }
        held.intersection(&self.required_for).next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(required_for: &[Permission]) -> SecondFactorPolicy {
        SecondFactorPolicy {
            step_up_max_age: TimeDelta::minutes(15),
            required_for: required_for.iter().copied().collect(),
        }
    }

    #[test]
    fn a_person_without_a_factor_is_never_asked_to_step_up() {
        let now = Utc::now();
        assert_eq!(policy(&[]).step_up(false, None, now), StepUp::Satisfied);
    }

    #[test]
    fn a_factor_proved_within_the_maximum_age_satisfies_the_step_up() {
        let now = Utc::now();
        let policy = policy(&[]);
        let required = StepUp::Required {
            max_age: TimeDelta::minutes(15),
        };
        assert_eq!(policy.step_up(true, None, now), required);
        assert_eq!(
            policy.step_up(true, Some(now - TimeDelta::minutes(15)), now),
            StepUp::Satisfied
        );
        assert_eq!(
            policy.step_up(
                true,
                Some(now - TimeDelta::minutes(15) - TimeDelta::seconds(1)),
                now
            ),
            required
        );
        // A proof dated in the future (a clock gone wrong) proves nothing.
        assert_eq!(
            policy.step_up(true, Some(now + TimeDelta::minutes(1)), now),
            required
        );
    }

    #[test]
    fn holders_of_a_chosen_permission_must_enrol_and_no_one_else() {
        let policy = policy(&[Permission::RolesWrite]);
        let admin: BTreeSet<Permission> = [Permission::UsersRead, Permission::RolesWrite].into();
        let reader: BTreeSet<Permission> = [Permission::UsersRead].into();
        assert_eq!(
            policy.enrolment_required_by(&admin, false),
            Some(Permission::RolesWrite)
        );
        assert_eq!(policy.enrolment_required_by(&admin, true), None);
        assert_eq!(policy.enrolment_required_by(&reader, false), None);
    }
}
