//! `in_tx!` commits what a body produced and rolls back a body that left early: no path through
//! a transaction can end uncommitted without the caller having chosen it.

use vigil_server::db::Db;
use vigil_server::in_tx;

use crate::on_both_databases;

#[derive(Debug, thiserror::Error)]
enum Abort {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("changed my mind")]
    ChangedMyMind,
}

async fn create(db: &Db, short: &str, abort: bool) -> Result<i64, Abort> {
    let id = in_tx!(db, tx => {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO organisations (name, short_name, created_at) VALUES ($1, $1, 0) RETURNING id")
            .bind(short).fetch_one(&mut *tx).await?;
        if abort {
            return Err(Abort::ChangedMyMind);
        }
        // No commit here: reaching the body's value is what commits.
        id
    });
    Ok(id)
}

async fn stored(db: &Db, short: &str) -> Vec<i64> {
    vigil_server::on_reader!(db, pool => sqlx::query_scalar::<_, i64>(
        "SELECT id FROM organisations WHERE short_name = $1")
        .bind(short).fetch_all(pool).await)
    .expect("read organisations")
}

async fn committed_on_value_and_rolled_back_on_early_exit(db: &Db) {
    let id = create(db, "tx-kept", false).await.expect("commits");
    assert_eq!(stored(db, "tx-kept").await, vec![id]);
    assert!(matches!(
        create(db, "tx-dropped", true).await,
        Err(Abort::ChangedMyMind)
    ));
    assert!(
        stored(db, "tx-dropped").await.is_empty(),
        "a body that left early must leave nothing behind"
    );
    // The one writer connection (SQLite) is free again: an aborted body does not hold it.
    let again = create(db, "tx-after", false).await.expect("writer free");
    assert_eq!(stored(db, "tx-after").await, vec![again]);
}

on_both_databases! {
    async fn a_transaction_body_commits_by_reaching_its_value(srv: TestServer) {
        committed_on_value_and_rolled_back_on_early_exit(&srv.state.db).await;
    }
}
