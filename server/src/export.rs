//! CSV downloads (roll-call boards, the audit chain): rows written as they are read, served
//! as an attachment.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, AppResult};

/// A CSV file being written.
#[derive(Debug)]
pub struct Csv(csv::Writer<Vec<u8>>);

fn failed(e: csv::Error) -> AppError {
    AppError::Internal(e.into())
}

impl Csv {
    /// A file starting with its header row.
    pub fn new<I, T>(header: I) -> AppResult<Csv>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut csv = Csv(csv::Writer::from_writer(Vec::new()));
        csv.row(header)?;
        Ok(csv)
    }

    /// Appends one row.
    pub fn row<I, T>(&mut self, record: I) -> AppResult<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.0.write_record(record).map_err(failed)
    }

    /// The file as a download named `filename`.
    pub fn attachment(self, filename: &str) -> AppResult<Response> {
        let body = self
            .0
            .into_inner()
            .map_err(|e| AppError::Internal(anyhow::anyhow!("csv: {e}")))?;
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{filename}\""),
                ),
            ],
            body,
        )
            .into_response())
    }
}
