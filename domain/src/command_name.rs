//! Every command's name, from its enum (`UserCommand::ChangeEmail` is
//! `change_email`), for labels that must stay a bounded set: the names of
//! an aggregate's commands are all known in advance.

/// A command that knows its name and its enum's every name.
pub trait CommandName {
    /// The names of every command of this enum.
    const NAMES: &'static [&'static str];
    fn name(&self) -> &'static str;
}

impl<T> CommandName for T
where
    T: strum::VariantNames,
    for<'a> &'a T: Into<&'static str>,
{
    const NAMES: &'static [&'static str] = T::VARIANTS;

    fn name(&self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::CommandName;
    use crate::RoleCommand;

    #[test]
    fn a_command_is_named_by_its_variant_in_snake_case() {
        let delete = RoleCommand::Delete;
        assert_eq!(delete.name(), "delete");
        assert!(RoleCommand::NAMES.contains(&"delete"));
        assert!(RoleCommand::NAMES
            .iter()
            .all(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
