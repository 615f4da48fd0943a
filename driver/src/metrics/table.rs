//! Typed reads of the master table's columns, with errors that name the column at fault.
//!
//! A column of a compatible type (an `i32` count, an all-null list) is cast rather than refused:
//! Parquet round trips and empty runs change physical types without changing meaning.

use polars::prelude::*;

use super::MetricsError;

fn column_as(df: &DataFrame, name: &str, dtype: &DataType) -> Result<Column, MetricsError> {
    let column = df.column(name).map_err(|_| MetricsError::MissingColumn {
        column: name.to_string(),
        expected: dtype.to_string(),
    })?;
    if column.dtype() == dtype {
        return Ok(column.clone());
    }
    column
        .strict_cast(dtype)
        .map_err(|_| MetricsError::ColumnType {
            column: name.to_string(),
            found: column.dtype().to_string(),
            expected: dtype.to_string(),
        })
}

pub(crate) fn strings(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, MetricsError> {
    let column = column_as(df, name, &DataType::String)?;
    Ok(column
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// A column that must have a value in every row (`prompt_id`, `strategy`, ...).
pub(crate) fn required_strings(df: &DataFrame, name: &str) -> Result<Vec<String>, MetricsError> {
    strings(df, name)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| {
            v.ok_or_else(|| MetricsError::Null {
                row,
                column: name.to_string(),
            })
        })
        .collect()
}

pub(crate) fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, MetricsError> {
    let column = column_as(df, name, &DataType::Float64)?;
    Ok(column.f64()?.iter().collect())
}

pub(crate) fn ints(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, MetricsError> {
    let column = column_as(df, name, &DataType::Int64)?;
    Ok(column.i64()?.iter().collect())
}

pub(crate) fn bools(df: &DataFrame, name: &str) -> Result<Vec<Option<bool>>, MetricsError> {
    let column = column_as(df, name, &DataType::Boolean)?;
    Ok(column.bool()?.iter().collect())
}

/// A `list[f64]` column (logprobs); a null list stays `None`, null items inside one become NaN.
pub(crate) fn float_lists(
    df: &DataFrame,
    name: &str,
) -> Result<Vec<Option<Vec<f64>>>, MetricsError> {
    let column = column_as(df, name, &DataType::List(Box::new(DataType::Float64)))?;
    let lists = column.list()?;
    (0..lists.len())
        .map(|i| match lists.get_as_series(i) {
            None => Ok(None),
            Some(series) => Ok(Some(
                series
                    .f64()?
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect(),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_column_is_named_with_its_expected_type() {
        let df = DataFrame::new(1, vec![Column::new("x".into(), [1i64])]).unwrap();
        let message = floats(&df, "cluster_latency_ms").unwrap_err().to_string();
        assert!(message.contains("`cluster_latency_ms`"), "{message}");
        assert!(message.contains("f64"), "{message}");
    }

    #[test]
    fn an_int_column_is_read_as_floats_and_text_is_refused() {
        let df = DataFrame::new(
            2,
            vec![
                Column::new("n".into(), [Some(3i32), None]),
                Column::new("s".into(), ["a", "b"]),
            ],
        )
        .unwrap();
        assert_eq!(floats(&df, "n").unwrap(), vec![Some(3.0), None]);
        let message = floats(&df, "s").unwrap_err().to_string();
        assert!(message.contains("column `s` has type str"), "{message}");
    }

    #[test]
    fn a_null_in_a_required_column_names_its_row() {
        let df =
            DataFrame::new(2, vec![Column::new("strategy".into(), [Some("a"), None])]).unwrap();
        let message = required_strings(&df, "strategy").unwrap_err().to_string();
        assert!(message.contains("row 1"), "{message}");
    }
}
