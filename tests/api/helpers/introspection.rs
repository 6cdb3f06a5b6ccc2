//! The schema of a running server, read by introspection into typed data: its root types,
//! and every named type with its fields, arguments, input fields, possible types and enum
//! values. Deprecated fields, arguments, input fields and enum values are included.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::{TestApp, data};

/// What [`Schema::introspect`] asks: everything the types below hold.
const INTROSPECTION: &str = "query SchemaIntrospection { __schema {
    queryType { name }
    mutationType { name }
    types {
        kind name
        fields(includeDeprecated: true) {
            name
            args(includeDeprecated: true) { name defaultValue type { ...TypeRef } }
            type { ...TypeRef }
        }
        inputFields(includeDeprecated: true) { name defaultValue type { ...TypeRef } }
        possibleTypes { name }
        enumValues(includeDeprecated: true) { name }
    } } }
    fragment TypeRef on __Type {
        kind name ofType { kind name ofType { kind name ofType { kind name ofType {
            kind name ofType { kind name ofType { kind name } } } } } } }";

/// What a type is: a named kind, or a wrapper (`List`, `NonNull`) of a type reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TypeKind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    InputObject,
    List,
    NonNull,
}

impl TypeKind {
    /// Whether a field of this kind needs a selection set: an object, interface or union.
    pub fn is_composite(self) -> bool {
        matches!(self, Self::Object | Self::Interface | Self::Union)
    }
}

/// Something introspection names and no more: a root type, a possible type, an enum value.
#[derive(Debug, Deserialize)]
pub struct Named {
    pub name: String,
}

/// A type reference: a named type, possibly wrapped in lists and non-nulls.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeRef {
    pub kind: TypeKind,
    pub name: Option<String>,
    pub of_type: Option<Box<TypeRef>>,
}

impl TypeRef {
    /// The named type under the list and non-null wrappers.
    pub fn named(&self) -> &str {
        match &self.of_type {
            Some(inner) => inner.named(),
            None => self
                .name
                .as_deref()
                .expect("a type reference no deeper than the introspection query follows"),
        }
    }

    /// How many lists wrap the named type: 2 for `[[String!]]!`.
    pub fn lists(&self) -> usize {
        let here = usize::from(self.kind == TypeKind::List);
        here + self.of_type.as_deref().map_or(0, TypeRef::lists)
    }

    /// The wrapped type of a list or non-null.
    pub fn inner(&self) -> &TypeRef {
        self.of_type
            .as_deref()
            .expect("a wrapper type wraps a type")
    }

    /// As GraphQL writes it (in a variable declaration, say): `[SecretReferenceInput!]!`.
    pub fn render(&self) -> String {
        match self.kind {
            TypeKind::NonNull => format!("{}!", self.inner().render()),
            TypeKind::List => format!("[{}]", self.inner().render()),
            _ => self.named().to_owned(),
        }
    }
}

/// An argument or an input field.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputValue {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: TypeRef,
    pub default_value: Option<String>,
}

impl InputValue {
    /// Whether a request must give it: non-null and without a default.
    pub fn is_required(&self) -> bool {
        self.ty.kind == TypeKind::NonNull && self.default_value.is_none()
    }
}

/// A field of an object or interface type.
#[derive(Debug, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub args: Vec<InputValue>,
    #[serde(rename = "type")]
    pub ty: TypeRef,
}

/// A named type. Introspection gives each list only to the kinds that have one (`fields`
/// to objects and interfaces...) and `null` to the others; the methods of the same names
/// give an empty list instead.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeDef {
    pub kind: TypeKind,
    pub name: String,
    pub fields: Option<Vec<FieldDef>>,
    pub input_fields: Option<Vec<InputValue>>,
    pub possible_types: Option<Vec<Named>>,
    pub enum_values: Option<Vec<Named>>,
}

impl TypeDef {
    pub fn fields(&self) -> &[FieldDef] {
        self.fields.as_deref().unwrap_or_default()
    }

    pub fn input_fields(&self) -> &[InputValue] {
        self.input_fields.as_deref().unwrap_or_default()
    }

    pub fn possible_types(&self) -> &[Named] {
        self.possible_types.as_deref().unwrap_or_default()
    }

    pub fn enum_values(&self) -> &[Named] {
        self.enum_values.as_deref().unwrap_or_default()
    }
}

/// `__schema` as introspection answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntrospectedSchema {
    query_type: Named,
    mutation_type: Option<Named>,
    types: Vec<TypeDef>,
}

/// The introspected schema.
pub struct Schema {
    /// The name of the query root type.
    query: String,
    /// The name of the mutation root type, if there is one.
    mutation: Option<String>,
    /// Every named type, by name.
    pub types: BTreeMap<String, TypeDef>,
}

impl Schema {
    /// The schema of the running server, introspected over HTTP as the admin.
    pub async fn introspect(app: &TestApp) -> Self {
        let response = app.admin(INTROSPECTION, json!({})).await;
        let introspected: IntrospectedSchema =
            serde_json::from_value(data(&response)["__schema"].clone())
                .expect("the introspection answer has the shape asked for");
        Self {
            query: introspected.query_type.name,
            mutation: introspected.mutation_type.map(|ty| ty.name),
            types: introspected
                .types
                .into_iter()
                .map(|ty| (ty.name.clone(), ty))
                .collect(),
        }
    }

    /// The operation keyword and root type of each root: `("query", "Query")`, then
    /// `("mutation", "Mutation")` if there is a mutation root.
    pub fn roots(&self) -> Vec<(&'static str, &str)> {
        let mut roots = vec![("query", self.query.as_str())];
        roots.extend(self.mutation.as_deref().map(|root| ("mutation", root)));
        roots
    }

    /// The named type `name`; panics if the schema has none.
    pub fn ty(&self, name: &str) -> &TypeDef {
        self.types
            .get(name)
            .unwrap_or_else(|| panic!("type {name} is not in the schema"))
    }
}
