//! One validation layer for every string argument and input field, whatever field it
//! feeds and whichever store is behind it: text that holds a control character is refused
//! with `BAD_USER_INPUT` before anything runs, so nothing is written and PostgreSQL (which
//! cannot store NUL) behaves exactly like SQLite.
//!
//! The rule for a position comes from the schema: a secret *value* may hold any UTF-8
//! (it is encrypted, never displayed by us); a `description` may hold tab and newline; every
//! other string (names, fields, ids, filters, cursors) holds none. Literals in the document
//! and variables are walked alike, against the types the schema gives each argument.
use crate::error::Code;
use std::collections::HashSet;

use async_graphql::{
    Name, Pos, Positioned, ServerError, Value as ConstValue, Variables,
    parser::types::{
        ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
    },
    registry::{MetaType, MetaTypeName, Registry},
};

/// Input fields that carry a secret's value: any UTF-8, NUL included.
const SECRET_VALUE_FIELDS: &[(&str, &str)] = &[
    ("CreateSecretInput", "value"),
    ("UpdateSecretInput", "value"),
];

/// What a string in one position may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextRule {
    /// No control character at all: names, fields, ids, filters.
    SingleLine,
    /// Free text: tab and newline allowed, no other control character.
    Multiline,
    /// A secret value: anything.
    Any,
}

impl TextRule {
    /// The rule for input field (or argument) `name` of `owner` (an input type, or
    /// `Type.field` for an argument).
    pub fn for_position(owner: &str, name: &str) -> Self {
        if SECRET_VALUE_FIELDS.contains(&(owner, name)) {
            Self::Any
        } else if name == "description" || name == "reason" {
            Self::Multiline
        } else {
            Self::SingleLine
        }
    }

    /// The first character this rule refuses in `text`, with its index in characters.
    pub fn first_refused(self, text: &str) -> Option<(usize, char)> {
        if self == Self::Any {
            return None;
        }
        text.chars().enumerate().find(|&(_, c)| {
            let allowed = self == Self::Multiline && matches!(c, '\t' | '\n');
            !allowed && is_refused(c)
        })
    }
}

/// Control characters (Unicode `Cc`: C0, DEL, C1), the line and paragraph separators, and
/// the bidirectional embedding, override and isolate controls that make text display
/// other than it reads.
fn is_refused(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks every string that an argument of `operation` (the one that will run, an
/// operation of `doc`) feeds to a resolver.
pub fn check(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Result<(), ServerError> {
    let root = match operation.ty {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let Some(root) = root else {
        return Ok(());
    };
    let mut walk = Walk {
        registry,
        doc,
        variables,
        defaults: operation
            .variable_definitions
            .iter()
            .filter_map(|d| Some((&d.node.name.node, d.node.default_value.as_ref()?)))
            .collect(),
        fragments_done: HashSet::new(),
    };
    walk.selection_set(&operation.selection_set.node, root)
}

struct Walk<'a> {
    registry: &'a Registry,
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    /// The operation's variable defaults, used when a variable is absent.
    defaults: Vec<(&'a Name, &'a Positioned<ConstValue>)>,
    fragments_done: HashSet<&'a str>,
}

/// Where a string sits, for the message: `createSecret(input.references[0].field)`.
struct Place<'p> {
    field: &'p str,
    path: String,
    pos: Pos,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, parent: &str) -> Result<(), ServerError> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let Some(meta) = self
                        .registry
                        .types
                        .get(parent)
                        .and_then(|t| t.field_by_name(&field.node.name.node))
                    else {
                        continue; // validation reports unknown fields
                    };
                    for (name, value) in &field.node.arguments {
                        let Some(arg) = meta.args.get(name.node.as_str()) else {
                            continue;
                        };
                        let owner = format!("{parent}.{}", meta.name);
                        let place = Place {
                            field: &meta.name,
                            path: name.node.to_string(),
                            pos: value.pos,
                        };
                        let rule = TextRule::for_position(&owner, &name.node);
                        // Variables filled in (a missing one by its default): the walk sees
                        // exactly what the resolver will.
                        let given = value.node.clone().into_const_with(|name| {
                            let default = self.defaults.iter().find(|(n, _)| **n == name);
                            let value = self.variables.get(&name);
                            Ok::<_, std::convert::Infallible>(
                                value
                                    .or(default.map(|(_, d)| &d.node))
                                    .cloned()
                                    .unwrap_or(ConstValue::Null),
                            )
                        });
                        let Ok(given) = given;
                        self.constant(&given, &arg.ty, rule, &place)?;
                    }
                    let child = MetaTypeName::concrete_typename(&meta.ty);
                    self.selection_set(&field.node.selection_set.node, child)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    // A fragment's literals and variables are the same wherever it is
                    // spread: walk each once (this also stops at fragment cycles).
                    if let Some(fragment) = self.doc.fragments.get(name)
                        && self.fragments_done.insert(name)
                    {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.selection_set(&fragment.node.selection_set.node, on)?;
                    }
                }
                Selection::InlineFragment(inline) => {
                    let on = inline
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(parent, |c| c.node.on.node.as_str());
                    self.selection_set(&inline.node.selection_set.node, on)?;
                }
            }
        }
        Ok(())
    }

    /// An argument's value, variables filled in, in a position of type `ty`.
    fn constant(
        &self,
        value: &ConstValue,
        ty: &str,
        rule: TextRule,
        place: &Place<'_>,
    ) -> Result<(), ServerError> {
        match value {
            ConstValue::String(text) => refuse_control(text, rule, place),
            ConstValue::List(items) => {
                let item_ty = list_item(ty);
                for (i, item) in items.iter().enumerate() {
                    self.constant(item, item_ty.unwrap_or(ty), rule, &place.index(i))?;
                }
                Ok(())
            }
            ConstValue::Object(fields) => {
                let owner = MetaTypeName::concrete_typename(ty);
                // Only the schema's own fields: validation refuses any other key (without
                // quoting it), and nothing reaches a resolver then.
                for (name, value) in fields {
                    if let Some(field_ty) = self.input_field(owner, name) {
                        let rule = TextRule::for_position(owner, name);
                        self.constant(value, field_ty, rule, &place.key(name))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn input_field(&self, owner: &str, name: &str) -> Option<&str> {
        match self.registry.types.get(owner)? {
            MetaType::InputObject { input_fields, .. } => {
                input_fields.get(name).map(|f| f.ty.as_str())
            }
            _ => None,
        }
    }
}

/// The item type of a list type (`[T!]!` → `T!`), or `None` for a non-list.
fn list_item(ty: &str) -> Option<&str> {
    match MetaTypeName::create(ty) {
        MetaTypeName::NonNull(inner) => list_item(inner),
        MetaTypeName::List(item) => Some(item),
        MetaTypeName::Named(_) => None,
    }
}

impl Place<'_> {
    fn key(&self, name: &str) -> Place<'_> {
        Place {
            field: self.field,
            path: format!("{}.{name}", self.path),
            pos: self.pos,
        }
    }

    fn index(&self, i: usize) -> Place<'_> {
        Place {
            field: self.field,
            path: format!("{}[{i}]", self.path),
            pos: self.pos,
        }
    }
}

fn refuse_control(text: &str, rule: TextRule, place: &Place<'_>) -> Result<(), ServerError> {
    let Some((at, c)) = rule.first_refused(text) else {
        return Ok(());
    };
    let allowed = match rule {
        TextRule::Multiline => "this text may hold tab and newline, but no other control character",
        _ => {
            "names, fields, ids and filters may hold no control character (only descriptions may hold tab and newline)"
        }
    };
    let message = format!(
        "`{}({})` holds the control character U+{:04X} at character {}; remove it: {allowed}",
        place.field, place.path, c as u32, at
    );
    Err(super::errors::coded(
        message,
        Code::BadUserInput,
        Some(place.pos),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_by_position() {
        assert_eq!(
            TextRule::for_position("CreateSecretInput", "value"),
            TextRule::Any
        );
        assert_eq!(
            TextRule::for_position("UpsertResourceInput", "description"),
            TextRule::Multiline
        );
        assert_eq!(
            TextRule::for_position("SecretReferenceInput", "field"),
            TextRule::SingleLine
        );
        // A `value` anywhere else is ordinary text.
        assert_eq!(
            TextRule::for_position("Query.secret", "value"),
            TextRule::SingleLine
        );
    }

    #[test]
    fn what_each_rule_refuses() {
        let single = TextRule::SingleLine;
        let multi = TextRule::Multiline;
        assert_eq!(single.first_refused("plain text é ✓"), None);
        assert_eq!(single.first_refused("a\0b"), Some((1, '\0')));
        assert_eq!(single.first_refused("tab\there"), Some((3, '\t')));
        assert_eq!(multi.first_refused("line 1\n\tline 2"), None);
        assert_eq!(multi.first_refused("crlf\r\n"), Some((4, '\r')));
        for c in [
            '\u{7f}', '\u{85}', '\u{1b}', '\u{2028}', '\u{202e}', '\u{2066}',
        ] {
            let text = format!("x{c}");
            assert_eq!(multi.first_refused(&text), Some((1, c)), "{c:?}");
        }
        assert_eq!(TextRule::Any.first_refused("\0\u{202e}\r"), None);
    }
}
