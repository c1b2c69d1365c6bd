//! `GET <prefix>/discovery`: the API described as a Google discovery document (format
//! `discovery#restDescription` v1), the form fleet served from its `schema/v1.json`.
//!
//! The schemas follow [`super::entities`] (JSON keys, enums of desired and current state) and
//! the methods follow [`super::routes::route`]; a test walks every method through the router,
//! so the document cannot name a route that fltd does not serve. Unlike fleet's, it also lists
//! `PATCH machines` and `GET state/{unitName}`, which fleet served but did not describe.

use super::routes::PREFIX;
use serde_json::{Value, json};

/// The document, with `basePath` under [`PREFIX`] (`rootUrl` is the placeholder `$ENDPOINT/`,
/// as in fleet: the server does not know the address a client used).
pub fn discovery_document() -> String {
    document().to_string()
}

fn string() -> Value {
    json!({"type": "string"})
}

fn states() -> Value {
    json!({"type": "string", "enum": ["inactive", "loaded", "launched"]})
}

fn page_of(items: &str, schema: &str) -> Value {
    json!({
        "id": format!("{schema}Page"),
        "type": "object",
        "properties": {
            items: {"type": "array", "items": {"$ref": schema}},
            "nextPageToken": string(),
        }
    })
}

fn schemas() -> Value {
    json!({
        "Machine": {
            "id": "Machine",
            "type": "object",
            "properties": {
                "id": string(),
                "primaryIP": string(),
                "metadata": {
                    "type": "object",
                    "properties": {},
                    "additionalProperties": string(),
                },
            }
        },
        "MachinePage": page_of("machines", "Machine"),
        "MachineMetadataOp": {
            "id": "MachineMetadataOp",
            "type": "object",
            "description": "One metadata edit; `value` may also be a plain string.",
            "properties": {
                "op": {"type": "string", "enum": ["add", "remove", "replace"]},
                "path": {"type": "string", "description": "/<machineID>/metadata/<key>"},
                "value": {"type": "object", "properties": {"value": string()}},
            }
        },
        "UnitOption": {
            "id": "UnitOption",
            "type": "object",
            "properties": {"section": string(), "name": string(), "value": string()},
        },
        "Unit": {
            "id": "Unit",
            "type": "object",
            "properties": {
                "name": string(),
                "options": {"type": "array", "items": {"$ref": "UnitOption"}},
                "desiredState": states(),
                "currentState": states(),
                "machineID": string(),
            }
        },
        "UnitPage": page_of("units", "Unit"),
        "UnitState": {
            "id": "UnitState",
            "type": "object",
            "properties": {
                "name": string(),
                "hash": string(),
                "machineID": string(),
                "systemdLoadState": string(),
                "systemdActiveState": string(),
                "systemdSubState": string(),
            }
        },
        "UnitStatePage": page_of("states", "UnitState"),
        "Error": {
            "id": "Error",
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "integer"}, "message": string()},
                }
            }
        },
    })
}

fn query(names: &[&str]) -> Value {
    let mut parameters = serde_json::Map::new();
    for name in names {
        parameters.insert(
            (*name).to_string(),
            json!({"type": "string", "location": "query"}),
        );
    }
    Value::Object(parameters)
}

fn unit_name() -> Value {
    json!({"unitName": {"type": "string", "location": "path", "required": true}})
}

fn method(id: &str, description: &str, http_method: &str, path: &str) -> Value {
    json!({
        "id": format!("flt.{id}"),
        "description": description,
        "httpMethod": http_method,
        "path": path,
    })
}

fn with(mut value: Value, key: &str, extra: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.insert(key.to_string(), extra);
    }
    value
}

fn by_name(method: Value) -> Value {
    let method = with(method, "parameters", unit_name());
    with(method, "parameterOrder", json!(["unitName"]))
}

fn resources() -> Value {
    let list = |id: &str, what: &str, path: &str, params: &[&str], page: &str| {
        let m = method(
            id,
            &format!("Retrieve a page of {what} objects."),
            "GET",
            path,
        );
        let m = with(m, "parameters", query(params));
        with(m, "response", json!({"$ref": page}))
    };
    json!({
        "Machines": {"methods": {
            "List": list("Machine.List", "Machine", "machines", &["nextPageToken"], "MachinePage"),
            "Patch": with(
                method("Machine.Patch", "Add, replace or remove machine metadata.", "PATCH", "machines"),
                "request",
                json!({"type": "array", "items": {"$ref": "MachineMetadataOp"}}),
            ),
        }},
        "Units": {"methods": {
            "List": list("Unit.List", "Unit", "units", &["nextPageToken"], "UnitPage"),
            "Get": with(
                by_name(method("Unit.Get", "Retrieve a single Unit object.", "GET", "units/{unitName}")),
                "response",
                json!({"$ref": "Unit"}),
            ),
            "Set": with(
                by_name(method("Unit.Set", "Create or update a Unit.", "PUT", "units/{unitName}")),
                "request",
                json!({"$ref": "Unit"}),
            ),
            "Delete": by_name(method(
                "Unit.Delete",
                "Delete the referenced Unit object.",
                "DELETE",
                "units/{unitName}",
            )),
        }},
        "UnitState": {"methods": {
            "List": list(
                "UnitState.List",
                "UnitState",
                "state",
                &["nextPageToken", "unitName", "machineID"],
                "UnitStatePage",
            ),
            "Get": with(
                by_name(method(
                    "UnitState.Get",
                    "Retrieve the state of a unit on one machine.",
                    "GET",
                    "state/{unitName}",
                )),
                "response",
                json!({"$ref": "UnitState"}),
            ),
        }},
    })
}

fn document() -> Value {
    json!({
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "flt:v1",
        "name": "flt",
        "version": "v1",
        "title": "flt API",
        "description": "Units, their states and the machines of a flt cluster.",
        "protocol": "rest",
        "rootUrl": "$ENDPOINT/",
        "baseUrl": format!("$ENDPOINT{PREFIX}/"),
        "basePath": format!("{PREFIX}/"),
        "servicePath": format!("{}/", PREFIX.trim_start_matches('/')),
        "parameters": {},
        "schemas": schemas(),
        "resources": resources(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::{Route, route};

    fn each_method(doc: &Value, mut f: impl FnMut(&str, &Value)) {
        for (resource, body) in doc["resources"].as_object().unwrap() {
            for (name, method) in body["methods"].as_object().unwrap() {
                f(&format!("{resource}.{name}"), method);
            }
        }
    }

    #[test]
    fn every_method_is_a_served_route() {
        let doc: Value = serde_json::from_str(&discovery_document()).unwrap();
        let base = doc["basePath"].as_str().unwrap();
        let mut routes = Vec::new();
        each_method(&doc, |name, method| {
            let path = method["path"].as_str().unwrap();
            let http = method["httpMethod"].as_str().unwrap();
            let url = format!("{base}{}", path.replace("{unitName}", "a.service"));
            let routed = route(http, &url).unwrap_or_else(|e| panic!("{name}: {url}: {e}"));
            routes.push(routed);
        });
        routes.sort_by_key(|r| format!("{r:?}"));
        let mut expected = vec![
            Route::ListMachines,
            Route::PatchMachines,
            Route::ListUnits,
            Route::GetUnit("a.service".into()),
            Route::PutUnit("a.service".into()),
            Route::DeleteUnit("a.service".into()),
            Route::ListStates,
            Route::GetState("a.service".into()),
        ];
        expected.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(routes, expected, "one method per API route");
    }

    #[test]
    fn every_reference_names_a_schema_with_the_entity_keys() {
        let doc: Value = serde_json::from_str(&discovery_document()).unwrap();
        let schemas = doc["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        fn collect(v: &Value, refs: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        refs.push(r.clone());
                    }
                    map.values().for_each(|v| collect(v, refs));
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, refs)),
                _ => {}
            }
        }
        collect(&doc, &mut refs);
        assert!(refs.len() > 8);
        for r in refs {
            assert!(schemas.contains_key(&r), "$ref {r} has no schema");
        }
        for (schema, id) in schemas {
            assert_eq!(id["id"], json!(schema));
        }
        // The keys an entity is serialized with are the schema's properties.
        let unit = serde_json::to_value(crate::api::Unit {
            current_state: "inactive".into(),
            desired_state: "launched".into(),
            machine_id: "m".into(),
            name: "a.service".into(),
            options: vec![crate::api::UnitOption {
                name: "n".into(),
                section: "s".into(),
                value: "v".into(),
            }],
        })
        .unwrap();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&unit), keys(&schemas["Unit"]["properties"]));
        assert_eq!(
            keys(&unit["options"][0]),
            keys(&schemas["UnitOption"]["properties"])
        );
        let error = serde_json::to_value(crate::api::ErrorEntity::new(400, "x")).unwrap();
        assert_eq!(keys(&error), keys(&schemas["Error"]["properties"]));
    }
}
