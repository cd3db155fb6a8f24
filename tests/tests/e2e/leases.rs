//! The DynamoDB lease store against moto: the conformance suite every store passes, and three
//! coordinators balancing, failing over and handing over through it.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use kappa_leases::LeaseStore;
use kappa_leases::conformance;
use kappa_leases::store::dynamodb::DynamoStore;
use kappa_tests::{Moto, aws_config};

async fn client(moto: &Moto) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&aws_config(&moto.endpoint).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_passes_the_lease_store_conformance_suite() {
    let moto = Moto::start();
    let client = client(&moto).await;
    let store = DynamoStore::open(client.clone(), "kappa-leases").await.expect("create the lease table");
    conformance::run(&store).await;

    // A second handle (opening an existing table) sees the first's writes and conflicts.
    let other = DynamoStore::open(client.clone(), "kappa-leases").await.expect("open the existing table");
    conformance::run_shared(&store, &other).await;

    let raced = DynamoStore::open(client.clone(), "kappa-leases-raced").await.unwrap();
    conformance::one_of_racing_writers_wins(Arc::new(raced), 16).await;

    let described = client.describe_table().table_name("kappa-leases").send().await.unwrap();
    let billing = described.table().and_then(|t| t.billing_mode_summary()).and_then(|b| b.billing_mode()).cloned();
    assert_eq!(billing, Some(BillingMode::PayPerRequest), "the lease table is created with on-demand billing");

    // A table that is not a lease table is refused, naming the flag to change.
    client
        .create_table()
        .table_name("orders")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap())
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .send()
        .await
        .unwrap();
    let err = DynamoStore::open(client, "orders").await.expect_err("a table with another key schema");
    let message = err.to_string();
    assert!(message.contains("dynamodb:orders") && message.contains("--leases dynamodb:TABLE"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_balance_fail_over_and_hand_over_through_dynamodb() {
    let moto = Moto::start();
    let store = DynamoStore::open(client(&moto).await, "kappa-leases").await.unwrap();
    let measured = conformance::workers_balance_fail_over_and_hand_over(Arc::new(store) as Arc<dyn LeaseStore>).await;
    eprintln!("dynamodb (moto): {measured:?}");
}
