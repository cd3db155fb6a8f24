//! Leases in a DynamoDB table: one item per shard, one per worker, one for the scope, under the
//! partition key `pk` (`lease#<shard>`, `worker#<id>`, `scope`). Every put and delete is
//! conditional on the item's `counter` (or its absence). The table is created on first use with
//! on-demand billing, so an idle lease table costs nothing.
//!
//! Requests in steady state, per worker and cycle: one PutItem (its heartbeat) and one Scan
//! (consistent, one page per ~1 MB of items: about 5,000 leases). Neither grows with the number
//! of shards a worker holds; lease items are written only when a lease moves.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus};

use crate::record::{Item, Key, Lease, Scope, Snapshot, Worker};
use crate::store::{Expect, LeaseStore, StoreError};

const PK: &str = "pk";
/// How long a new lease table may take to become active (AWS: seconds; emulators: at once).
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

type Attrs = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Opens the lease table `table`, creating it (on-demand billing) if it does not exist, and
    /// waits until it is active. Fails if the table exists with another key schema.
    pub async fn open(client: Client, table: &str) -> Result<DynamoStore, StoreError> {
        let store = DynamoStore { client, table: table.to_string() };
        match store.client.describe_table().table_name(table).send().await {
            Ok(out) => store.check_key_schema(out.table())?,
            Err(err) if code(&err) == Some("ResourceNotFoundException") => store.create().await?,
            Err(err) => return Err(store.unavailable("describe the lease table", &err)),
        }
        store.wait_active().await?;
        Ok(store)
    }

    async fn create(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name(PK).attribute_type(ScalarAttributeType::S).build().expect("attribute definition"),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(PK).key_type(KeyType::Hash).build().expect("key"))
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(table = %self.table, "created the DynamoDB lease table (on-demand billing)");
                Ok(())
            }
            // Another worker created it first.
            Err(err) if code(&err) == Some("ResourceInUseException") => Ok(()),
            Err(err) => Err(self.unavailable("create the lease table", &err)),
        }
    }

    fn check_key_schema(&self, table: Option<&aws_sdk_dynamodb::types::TableDescription>) -> Result<(), StoreError> {
        let keys: Vec<(String, String)> =
            table.map(|t| t.key_schema().iter().map(|k| (k.attribute_name().to_string(), k.key_type().as_str().to_string())).collect()).unwrap_or_default();
        if keys == [(PK.to_string(), "HASH".to_string())] {
            Ok(())
        } else {
            Err(StoreError::Unavailable {
                store: self.describe(),
                detail: format!(
                    "the table exists with the key schema {keys:?}, not a lease table's (hash key {PK:?} only): \
                     name another table in --leases dynamodb:TABLE"
                ),
            })
        }
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let out = self.client.describe_table().table_name(&self.table).send().await.map_err(|e| self.unavailable("describe the lease table", &e))?;
            // Updating (a change of its settings) serves requests as Active does.
            if matches!(out.table().and_then(|t| t.table_status()), Some(TableStatus::Active | TableStatus::Updating)) {
                return Ok(());
            }
            if started.elapsed() > CREATE_TIMEOUT {
                return Err(StoreError::Unavailable { store: self.describe(), detail: format!("the table is not active after {CREATE_TIMEOUT:?}") });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(&self, what: &str, err: &SdkError<E, R>) -> StoreError {
        StoreError::Unavailable { store: self.describe(), detail: format!("cannot {what}: {}", DisplayErrorContext(err)) }
    }

    /// A conditional request's outcome: a failed condition is a conflict, not an error.
    fn conditional<E, R>(&self, out: Result<(), SdkError<E, R>>, key: Key, what: &str) -> Result<(), StoreError>
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        match out {
            Ok(()) => Ok(()),
            Err(err) if code(&err) == Some("ConditionalCheckFailedException") => Err(StoreError::Conflict { key }),
            Err(err) => Err(self.unavailable(&format!("{what} the {key}"), &err)),
        }
    }

    fn corrupt(&self, attrs: &Attrs, detail: impl Into<String>) -> StoreError {
        let item = attrs.get(PK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_else(|| "(no pk)".into());
        StoreError::Corrupt { store: self.describe(), item, detail: detail.into() }
    }

    fn decode(&self, attrs: &Attrs) -> Result<Option<Item>, StoreError> {
        let pk = s(attrs, PK).ok_or_else(|| self.corrupt(attrs, "no pk"))?;
        if !(pk.starts_with("lease#") || pk.starts_with("worker#") || pk == "scope") {
            // Not ours: a lease table shared with something else is refused by the scope check
            // before this matters; skip rather than fail every worker's scan.
            return Ok(None);
        }
        let counter = n(attrs, "counter").ok_or_else(|| self.corrupt(attrs, "no counter"))?;
        let item = if let Some(shard) = pk.strip_prefix("lease#") {
            Item::Lease(Lease {
                shard: shard.to_string(),
                owner: s(attrs, "owner"),
                epoch: n(attrs, "epoch").ok_or_else(|| self.corrupt(attrs, "no epoch"))?,
                counter,
                parents: match attrs.get("parents") {
                    Some(AttributeValue::L(list)) => list.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
                    _ => Vec::new(),
                },
                ended: matches!(attrs.get("ended"), Some(AttributeValue::Bool(true))),
                checkpoint: s(attrs, "checkpoint"),
            })
        } else if let Some(id) = pk.strip_prefix("worker#") {
            Item::Worker(Worker {
                id: id.to_string(),
                counter,
                host: s(attrs, "host").unwrap_or_default(),
                pid: n(attrs, "pid").and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                positions: match attrs.get("positions") {
                    Some(AttributeValue::M(map)) => map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone()))).collect(),
                    _ => BTreeMap::new(),
                },
            })
        } else if pk == "scope" {
            Item::Scope(Scope { source: s(attrs, "source").unwrap_or_default(), table: s(attrs, "table").unwrap_or_default(), counter })
        } else {
            // Not ours: a lease table shared with something else is refused by the scope check
            // before this matters; skip rather than fail a scan.
            return Ok(None);
        };
        Ok(Some(item))
    }
}

fn s(attrs: &Attrs, name: &str) -> Option<String> {
    attrs.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn n(attrs: &Attrs, name: &str) -> Option<u64> {
    attrs.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn pk_of(key: &Key) -> String {
    match key {
        Key::Lease(shard) => format!("lease#{shard}"),
        Key::Worker(id) => format!("worker#{id}"),
        Key::Scope => "scope".to_string(),
    }
}

fn encode(item: &Item) -> Attrs {
    let mut attrs = Attrs::new();
    attrs.insert(PK.into(), AttributeValue::S(pk_of(&item.key())));
    attrs.insert("counter".into(), AttributeValue::N(item.counter().to_string()));
    match item {
        Item::Lease(lease) => {
            attrs.insert("shard".into(), AttributeValue::S(lease.shard.clone()));
            if let Some(owner) = &lease.owner {
                attrs.insert("owner".into(), AttributeValue::S(owner.clone()));
            }
            attrs.insert("epoch".into(), AttributeValue::N(lease.epoch.to_string()));
            attrs.insert("parents".into(), AttributeValue::L(lease.parents.iter().map(|p| AttributeValue::S(p.clone())).collect()));
            attrs.insert("ended".into(), AttributeValue::Bool(lease.ended));
            if let Some(checkpoint) = &lease.checkpoint {
                attrs.insert("checkpoint".into(), AttributeValue::S(checkpoint.clone()));
            }
        }
        Item::Worker(worker) => {
            attrs.insert("worker".into(), AttributeValue::S(worker.id.clone()));
            attrs.insert("host".into(), AttributeValue::S(worker.host.clone()));
            attrs.insert("pid".into(), AttributeValue::N(worker.pid.to_string()));
            attrs.insert("positions".into(), AttributeValue::M(worker.positions.iter().map(|(k, v)| (k.clone(), AttributeValue::S(v.clone()))).collect()));
        }
        Item::Scope(scope) => {
            attrs.insert("source".into(), AttributeValue::S(scope.source.clone()));
            attrs.insert("table".into(), AttributeValue::S(scope.table.clone()));
        }
    }
    attrs
}

/// The condition expression for `expect`, with its names and values.
fn condition(expect: Expect) -> (String, HashMap<String, String>, Option<HashMap<String, AttributeValue>>) {
    match expect {
        Expect::Absent => ("attribute_not_exists(#pk)".into(), HashMap::from([("#pk".into(), PK.into())]), None),
        Expect::Counter(counter) => (
            "#counter = :counter".into(),
            HashMap::from([("#counter".into(), "counter".into())]),
            Some(HashMap::from([(":counter".into(), AttributeValue::N(counter.to_string()))])),
        ),
    }
}

fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn scan(&self) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let mut start: Option<Attrs> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.unavailable("scan the lease table", &e))?;
            for attrs in out.items() {
                if let Some(item) = self.decode(attrs)? {
                    snapshot.insert(item);
                }
            }
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(snapshot),
            }
        }
    }

    async fn put(&self, item: &Item, expect: Expect) -> Result<(), StoreError> {
        let (expression, names, values) = condition(expect);
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(item)))
            .condition_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values)
            .send()
            .await;
        self.conditional(out.map(drop), item.key(), "write")
    }

    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        // A delete expecting a counter must not succeed on an absent item (DynamoDB would
        // evaluate `#counter = :counter` as false and fail: the conflict we want).
        let (expression, names, values) = condition(expect);
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(pk_of(key)))
            .condition_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values)
            .send()
            .await;
        self.conditional(out.map(drop), key.clone(), "delete")
    }

    fn describe(&self) -> String {
        format!("dynamodb:{}", self.table)
    }
}
