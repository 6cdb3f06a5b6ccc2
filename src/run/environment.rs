//! Which variable each pinned value goes in: a reference's `field` upper-cased with every
//! character outside `[A-Za-z0-9_]` as `_` (`api.key` → `API_KEY`), unless `--env NAME=FIELD`
//! names it. Two values meeting in one variable is refused rather than one silently
//! overwriting the other, and so is a `--env` naming a field the resource does not have:
//! both are mistakes the user should hear about before the command starts.
use std::{collections::BTreeMap, fmt};

use secrecy::SecretString;

use super::{Failure, args::EnvMapping, fetch::Pinned};

/// One variable of the command's environment. `Debug` shows only the name.
pub struct Variable {
    pub name: String,
    pub value: SecretString,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Variable({} = [REDACTED])", self.name)
    }
}

/// The variable a field goes in when no `--env` names it.
pub fn derived_name(field: &str) -> String {
    field
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect()
}

/// The variables for `pinned`, named by `mappings` where they name a field.
pub fn variables(pinned: &[Pinned], mappings: &[EnvMapping]) -> Result<Vec<Variable>, Failure> {
    if let Some(unknown) = mappings
        .iter()
        .find(|m| !pinned.iter().any(|p| p.field == m.field))
    {
        let mut fields: Vec<&str> = pinned.iter().map(|p| p.field.as_str()).collect();
        fields.sort_unstable();
        return Err(Failure::new(
            "UNKNOWN_FIELD",
            format!(
                "--env {}={}: the resource's deployment has no field {:?} (its fields: {})",
                unknown.name,
                unknown.field,
                unknown.field,
                if fields.is_empty() {
                    "none".to_owned()
                } else {
                    fields.join(", ")
                }
            ),
        ));
    }
    // Variable name → the field that fills it.
    let mut chosen: BTreeMap<String, &Pinned> = BTreeMap::new();
    for secret in pinned {
        let named: Vec<String> = mappings
            .iter()
            .filter(|m| m.field == secret.field)
            .map(|m| m.name.clone())
            .collect();
        let names = if named.is_empty() {
            vec![derived_name(&secret.field)]
        } else {
            named
        };
        for name in names {
            if let Some(other) = chosen.get(&name) {
                return Err(Failure::new(
                    "NAME_CLASH",
                    format!(
                        "fields {:?} and {:?} would both go in {name}; name one of them with \
                         --env NAME=FIELD",
                        other.field, secret.field
                    ),
                ));
            }
            chosen.insert(name, secret);
        }
    }
    Ok(chosen
        .into_iter()
        .map(|(name, secret)| Variable {
            name,
            value: secret.value.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn pinned(field: &str, value: &str) -> Pinned {
        Pinned {
            name: format!("S_{}", derived_name(field)),
            field: field.to_owned(),
            version: 1,
            value: SecretString::from(value),
        }
    }

    fn mapping(name: &str, field: &str) -> EnvMapping {
        EnvMapping {
            name: name.to_owned(),
            field: field.to_owned(),
        }
    }

    fn names_and_values(variables: &[Variable]) -> Vec<(&str, &str)> {
        variables
            .iter()
            .map(|v| (v.name.as_str(), v.value.expose_secret()))
            .collect()
    }

    #[test]
    fn fields_are_upper_cased_with_other_characters_as_underscores() {
        assert_eq!(derived_name("api.key"), "API_KEY");
        assert_eq!(derived_name("db-password"), "DB_PASSWORD");
        assert_eq!(derived_name("Mixed_Case9"), "MIXED_CASE9");
        assert_eq!(derived_name("a b/c:é"), "A_B_C__");
    }

    #[test]
    fn env_names_a_field_explicitly() {
        let pins = [pinned("api.key", "k"), pinned("db.password", "p")];
        let got = variables(&pins, &[mapping("PGPASSWORD", "db.password")]).expect("named");
        assert_eq!(
            names_and_values(&got),
            [("API_KEY", "k"), ("PGPASSWORD", "p")]
        );
    }

    #[test]
    fn two_fields_in_one_variable_are_refused() {
        let pins = [pinned("api.key", "1"), pinned("api-key", "2")];
        let refused = variables(&pins, &[]).expect_err("a clash");
        assert_eq!(refused.code, "NAME_CLASH");
        assert!(refused.message.contains("API_KEY"), "{}", refused.message);
        // Naming one of them resolves it; so does naming it into the other's place.
        assert!(variables(&pins, &[mapping("OTHER", "api-key")]).is_ok());
        let into_derived = variables(&pins, &[mapping("API_KEY", "api-key")]);
        assert_eq!(into_derived.expect_err("a clash").code, "NAME_CLASH");
    }

    #[test]
    fn env_for_a_field_the_resource_lacks_is_refused() {
        let pins = [pinned("api.key", "k")];
        let refused = variables(&pins, &[mapping("X", "nope")]).expect_err("unknown");
        assert_eq!(refused.code, "UNKNOWN_FIELD");
        assert!(refused.message.contains("api.key"), "{}", refused.message);
    }

    #[test]
    fn debug_never_shows_a_value() {
        let got = variables(&[pinned("api.key", "hunter2")], &[]).expect("one");
        assert!(!format!("{got:?}").contains("hunter2"));
        assert!(!format!("{:?}", pinned("api.key", "hunter2")).contains("hunter2"));
    }
}
