//! The tables kappa-query opens (the lake's, and those `--register` adds) can only be read:
//! each is registered behind [`ReadOnly`], which passes every read through and takes no
//! write. `Session::refuse_writes` turns a plain `INSERT INTO sales …` away first with a
//! message that says where rows go instead; this holds for every other way a write reaches a
//! table (`EXPLAIN ANALYZE INSERT …`, a prepared statement), whose plans the refusal does not
//! see.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake_core::datafusion::arrow::datatypes::SchemaRef;
use deltalake_core::datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use deltalake_core::datafusion::common::{Constraints, Statistics};
use deltalake_core::datafusion::error::{DataFusionError, Result};
use deltalake_core::datafusion::logical_expr::dml::InsertOp;
use deltalake_core::datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use deltalake_core::datafusion::physical_plan::ExecutionPlan;

/// A table that reads as `inner` and refuses every write.
#[derive(Debug)]
pub struct ReadOnly {
    pub name: String,
    pub inner: Arc<dyn TableProvider>,
}

impl ReadOnly {
    pub fn wrap(name: &str, inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        Arc::new(ReadOnly { name: name.to_string(), inner })
    }

    fn refused(&self, what: &str) -> DataFusionError {
        DataFusionError::Plan(format!("{what} {}: kappa-query reads this table, it never writes it", self.name))
    }
}

#[async_trait]
impl TableProvider for ReadOnly {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(&self, state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    async fn scan_with_args<'a>(&self, state: &dyn Session, args: ScanArgs<'a>) -> Result<ScanResult> {
        self.inner.scan_with_args(state, args).await
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn insert_into(&self, _state: &dyn Session, _input: Arc<dyn ExecutionPlan>, _insert_op: InsertOp) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.refused("INSERT INTO"))
    }
}
