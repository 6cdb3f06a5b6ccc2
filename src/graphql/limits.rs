//! Limits on an operation's shape, checked on the parsed document before async-graphql
//! walks it: aliases (400 aliases of one refused field is a flood, not a query), root
//! fields, and the number of field selections once fragments are expanded. Fragments are
//! counted once each and multiplied by their uses, so a document whose fragments spread
//! each other twice over cannot make this check (or the ones after it) take exponential
//! time.
use std::collections::HashMap;

use async_graphql::{
    ServerError,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// The limits, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct OperationLimits {
    pub max_aliases: usize,
    pub max_root_fields: usize,
    /// Field selections once fragments are expanded (the complexity limit: every field
    /// costs at least 1, so an operation over it would fail that limit anyway).
    pub max_expanded_fields: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Fields at this level, fragments included.
    fields: usize,
    /// Aliases at this level and below.
    aliases: usize,
    /// Field selections at this level and below.
    expanded: usize,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.expanded = self.expanded.saturating_add(other.expanded);
    }
}

/// Refuses an operation of `doc` that exceeds `limits`, with `GRAPHQL_VALIDATION_FAILED`.
pub fn check(doc: &ExecutableDocument, limits: &OperationLimits) -> Result<(), ServerError> {
    let mut counter = Counter {
        doc,
        memo: HashMap::new(),
    };
    for (_, operation) in doc.operations.iter() {
        let counts = counter.selection_set(&operation.node.selection_set.node);
        let refusal = if counts.fields > limits.max_root_fields {
            Some(format!(
                "an operation may select at most {} root fields; this one selects {}: \
                 split it into several operations",
                limits.max_root_fields, counts.fields
            ))
        } else if counts.aliases > limits.max_aliases {
            Some(format!(
                "an operation may use at most {} aliases; this one uses {}",
                limits.max_aliases, counts.aliases
            ))
        } else if counts.expanded > limits.max_expanded_fields {
            Some(format!(
                "an operation may select at most {} fields once its fragments are expanded; \
                 this one selects more",
                limits.max_expanded_fields
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            let code = crate::error::Code::GraphqlValidationFailed;
            return Err(super::errors::coded(message, code, Some(operation.pos)));
        }
    }
    Ok(())
}

struct Counter<'a> {
    doc: &'a ExecutableDocument,
    /// Counts per fragment; `None` while a fragment is being counted (a cycle, which
    /// validation refuses later, counts as nothing here).
    memo: HashMap<&'a str, Option<Counts>>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> Counts {
        let mut counts = Counts::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let below = self.selection_set(&field.node.selection_set.node);
                    counts.add(Counts {
                        fields: 1,
                        aliases: usize::from(field.node.alias.is_some())
                            .saturating_add(below.aliases),
                        expanded: below.expanded.saturating_add(1),
                    });
                }
                Selection::FragmentSpread(spread) => {
                    counts.add(self.fragment(spread.node.fragment_name.node.as_str()));
                }
                Selection::InlineFragment(inline) => {
                    counts.add(self.selection_set(&inline.node.selection_set.node));
                }
            }
        }
        counts
    }

    fn fragment(&mut self, name: &'a str) -> Counts {
        if let Some(known) = self.memo.get(name) {
            return known.unwrap_or_default();
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Counts::default(); // validation reports unknown fragments
        };
        self.memo.insert(name, None);
        let counts = self.selection_set(&fragment.node.selection_set.node);
        self.memo.insert(name, Some(counts));
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OperationLimits = OperationLimits {
        max_aliases: 3,
        max_root_fields: 2,
        max_expanded_fields: 50,
    };

    fn outcome(query: &str) -> Result<(), String> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        check(&doc, &LIMITS).map_err(|e| e.message)
    }

    #[test]
    fn aliases_root_fields_and_fragments_are_counted() {
        assert!(outcome("{ a: viewer { role } b: viewer { role } }").is_ok());
        let err = outcome("{ a: viewer { x: role y: role } b: viewer { role } }").expect_err("4");
        assert!(err.contains("at most 3 aliases; this one uses 4"), "{err}");
        let err = outcome("{ a b ...F } fragment F on Query { c }").expect_err("3 roots");
        assert!(
            err.contains("at most 2 root fields; this one selects 3"),
            "{err}"
        );
        // An alias in a fragment counts every time the fragment is spread.
        let err = outcome("{ x { ...F ...F } } fragment F on T { a: b c: d }").expect_err("4");
        assert!(err.contains("uses 4"), "{err}");
    }

    #[test]
    fn fragments_that_fan_out_are_refused_in_linear_time() {
        // 40 fragments, each spreading the next twice: 2^40 fields once expanded.
        let mut query = String::from("{ viewer { ...F0 } }");
        for i in 0..40 {
            query.push_str(&format!(
                " fragment F{i} on Viewer {{ ...F{0} ...F{0} }}",
                i + 1
            ));
        }
        query.push_str(" fragment F40 on Viewer { role }");
        let err = outcome(&query).expect_err("too big");
        assert!(err.contains("once its fragments are expanded"), "{err}");
    }

    #[test]
    fn fragment_cycles_do_not_hang() {
        assert!(
            outcome("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").is_ok()
        );
    }
}
