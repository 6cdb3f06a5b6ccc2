//! Response data as the GraphQL spec shapes it ("Executing Selection Sets", "Handling
//! Field Errors"), which async-graphql 7 does not quite do: it leaves an errored field out
//! of its parent (an object whose every field errored becomes `null`, so a nullable root
//! field that errs wipes all of `data`), and it lists an object's fields in the order
//! their resolvers finished.
//!
//! The pipeline turns every field error into a `null` placeholder (keeping the error), and
//! this module then walks the data along the operation's selections and the schema's
//! types: fields in query order; an errored field is `null`; a `null` in a non-null
//! position nulls the nearest nullable parent, up to `data` itself.
use std::collections::HashSet;

use async_graphql::{
    Name, PathSegment, ServerError, Value,
    indexmap::IndexMap,
    parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet},
    registry::{MetaTypeName, Registry},
};

/// Reshapes `data` of `operation` (an operation of `doc`) given the request's `errors`.
pub fn shape(
    data: Value,
    registry: &Registry,
    doc: &ExecutableDocument,
    operation: (&OperationType, &SelectionSet),
    errors: &[ServerError],
) -> Value {
    let Value::Object(map) = data else {
        return data;
    };
    let root = match operation.0 {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let Some(root) = root else {
        return Value::Object(map);
    };
    let mut shaper = Shaper {
        registry,
        doc,
        errors: errors
            .iter()
            .filter(|e| !e.path.is_empty())
            .map(|e| e.path.iter().map(Segment::from).collect())
            .collect(),
        path: Vec::new(),
    };
    let groups = shaper.groups(&[(operation.1, root)]);
    shaper.object(map, &groups).unwrap_or(Value::Null)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> From<&'a PathSegment> for Segment<'a> {
    fn from(segment: &'a PathSegment) -> Self {
        match segment {
            PathSegment::Field(key) => Self::Key(key),
            PathSegment::Index(i) => Self::Index(*i),
        }
    }
}

/// A `null` reached a non-null position: the nearest nullable parent becomes `null`.
struct Propagate;

/// The selections that share one response key, with the type each was selected on.
struct Group<'a> {
    key: &'a str,
    fields: Vec<(&'a Field, &'a str)>,
}

struct Shaper<'a> {
    registry: &'a Registry,
    doc: &'a ExecutableDocument,
    errors: HashSet<Vec<Segment<'a>>>,
    path: Vec<Segment<'a>>,
}

impl<'a> Shaper<'a> {
    /// The spec's CollectFields, ignoring type conditions (an object holds only the keys
    /// its runtime type selected, and the shaper follows the keys it holds).
    fn groups(&self, sets: &[(&'a SelectionSet, &'a str)]) -> Vec<Group<'a>> {
        let mut groups = Vec::new();
        let mut visited = HashSet::new();
        for (set, scope) in sets {
            self.collect(set, scope, &mut groups, &mut visited);
        }
        groups
    }

    fn collect(
        &self,
        set: &'a SelectionSet,
        scope: &'a str,
        groups: &mut Vec<Group<'a>>,
        visited: &mut HashSet<&'a str>,
    ) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let key = field.node.response_key().node.as_str();
                    match groups.iter_mut().find(|g| g.key == key) {
                        Some(group) => group.fields.push((&field.node, scope)),
                        None => groups.push(Group {
                            key,
                            fields: vec![(&field.node, scope)],
                        }),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if let Some(fragment) = self.doc.fragments.get(name)
                        && visited.insert(name)
                    {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.collect(&fragment.node.selection_set.node, on, groups, visited);
                    }
                }
                Selection::InlineFragment(inline) => {
                    let on = inline
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(scope, |c| c.node.on.node.as_str());
                    self.collect(&inline.node.selection_set.node, on, groups, visited);
                }
            }
        }
    }

    /// The declared type of a group's field, e.g. `[Dependent!]!`.
    fn field_type(&self, group: &Group<'a>) -> Option<&'a str> {
        group.fields.iter().find_map(|(field, scope)| {
            let name = field.name.node.as_str();
            if name == "__typename" {
                return Some("String!");
            }
            let meta = self.registry.types.get(*scope)?.field_by_name(name)?;
            Some(meta.ty.as_str())
        })
    }

    fn errored_here(&self) -> bool {
        !self.errors.is_empty() && self.errors.contains(self.path.as_slice())
    }

    fn object(
        &mut self,
        mut map: IndexMap<Name, Value>,
        groups: &[Group<'a>],
    ) -> Result<Value, Propagate> {
        let mut shaped = IndexMap::with_capacity(map.len());
        for group in groups {
            let Some((key, value)) = map.swap_remove_entry(group.key) else {
                continue; // skipped, or selected on another type
            };
            self.path.push(Segment::Key(group.key));
            let value = self.field(value, group);
            self.path.pop();
            shaped.insert(key, value?);
        }
        shaped.extend(map);
        Ok(Value::Object(shaped))
    }

    fn field(&mut self, value: Value, group: &Group<'a>) -> Result<Value, Propagate> {
        let Some(ty) = self.field_type(group) else {
            return Ok(if self.errored_here() {
                Value::Null
            } else {
                value
            });
        };
        if self.errored_here() {
            return null_at(ty);
        }
        let children: Vec<(&'a SelectionSet, &'a str)> = group
            .fields
            .iter()
            .map(|(field, _)| {
                let set = &field.selection_set.node;
                (set, MetaTypeName::concrete_typename(ty))
            })
            .filter(|(set, _)| !set.items.is_empty())
            .collect();
        let groups = if children.is_empty() {
            Vec::new()
        } else {
            self.groups(&children)
        };
        self.complete(value, ty, &groups)
    }

    /// A value in a position of type `ty`: a non-null position passes a propagating
    /// `null` up, a nullable one absorbs it.
    fn complete(
        &mut self,
        value: Value,
        ty: &'a str,
        groups: &[Group<'a>],
    ) -> Result<Value, Propagate> {
        match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(inner) => self.complete_nullable(value, inner, groups),
            _ => Ok(self
                .complete_nullable(value, ty, groups)
                .unwrap_or(Value::Null)),
        }
    }

    fn complete_nullable(
        &mut self,
        value: Value,
        ty: &'a str,
        groups: &[Group<'a>],
    ) -> Result<Value, Propagate> {
        match (MetaTypeName::create(ty), value) {
            (MetaTypeName::List(item_ty), Value::List(items)) => {
                let mut shaped = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    self.path.push(Segment::Index(i));
                    let item = if self.errored_here() {
                        null_at(item_ty)
                    } else {
                        self.complete(item, item_ty, groups)
                    };
                    self.path.pop();
                    shaped.push(item?);
                }
                Ok(Value::List(shaped))
            }
            (_, Value::Object(map)) if !groups.is_empty() => self.object(map, groups),
            (_, other) => Ok(other),
        }
    }
}

/// What an errored position holds: `null`, or a propagation if it may not be null.
fn null_at(ty: &str) -> Result<Value, Propagate> {
    match MetaTypeName::create(ty) {
        MetaTypeName::NonNull(_) => Err(Propagate),
        _ => Ok(Value::Null),
    }
}
