//! The dump's files: a checksum of a set of rows that does not depend on their order, and the
//! reading and writing of a table's JSON-lines file.

use super::*;

/// A checksum of a set of rows that does not depend on their order: the wrapping sum of each
/// row's SHA-256 (as four 64-bit lanes), each row's values taken in column-name order.
pub(super) struct RowSum {
    pub(super) lanes: [u64; 4],
    pub(super) rows: u64,
    /// Positions of the values in column-name order.
    pub(super) order: Vec<usize>,
}

impl RowSum {
    pub(super) fn new(columns: &[&str]) -> Self {
        let mut order: Vec<usize> = (0..columns.len()).collect();
        order.sort_by_key(|&i| columns[i]);
        Self {
            lanes: [0; 4],
            rows: 0,
            order,
        }
    }

    pub(super) fn add(&mut self, row: &[Value]) {
        let mut h = Sha256::new();
        for &i in &self.order {
            match &row[i] {
                Value::Null => h.update([0u8]),
                Value::Int(n) => {
                    h.update([1u8]);
                    h.update(n.to_be_bytes());
                }
                Value::Text(s) => {
                    h.update([2u8]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                Value::Bytes(b) => {
                    h.update([3u8]);
                    h.update((b.len() as u64).to_be_bytes());
                    h.update(b);
                }
            }
        }
        let digest = h.finalize();
        for (lane, chunk) in self.lanes.iter_mut().zip(digest.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_be_bytes(word));
        }
        self.rows += 1;
    }

    pub(super) fn hex(&self) -> String {
        self.lanes.iter().map(|l| format!("{l:016x}")).collect()
    }
}

// ---------------------------------------------------------------- the dump's lines

#[derive(Serialize, Deserialize)]
pub(super) struct Header {
    pub(super) table: String,
    pub(super) columns: Vec<(String, Kind)>,
}

pub(super) fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(n) => serde_json::Value::from(*n),
        Value::Text(s) => serde_json::Value::from(s.as_str()),
        Value::Bytes(b) => serde_json::Value::from(hex::encode(b)),
    }
}

pub(super) fn from_json(v: &serde_json::Value, kind: Kind) -> std::result::Result<Value, String> {
    match (v, kind) {
        (serde_json::Value::Null, _) => Ok(Value::Null),
        (serde_json::Value::Number(n), Kind::Integer) => n
            .as_i64()
            .map(Value::Int)
            .ok_or_else(|| format!("{n} is not a 64-bit integer")),
        (serde_json::Value::String(s), Kind::Text) => Ok(Value::Text(s.clone())),
        (serde_json::Value::String(s), Kind::Bytes) => hex::decode(s)
            .map(Value::Bytes)
            .map_err(|e| format!("bad hex: {e}")),
        (other, kind) => Err(format!("{other} is not a {kind:?} value")),
    }
}

/// Reads a table's dump file line by line: its header, then rows.
pub(super) struct DumpReader {
    pub(super) lines: tokio::io::Lines<tokio::io::BufReader<tokio::fs::File>>,
    pub(super) path: std::path::PathBuf,
    pub(super) header: Header,
    pub(super) line: u64,
}

impl DumpReader {
    pub(super) async fn open(path: &Path) -> Result<Self> {
        let file = tokio::fs::File::open(path).await.map_err(io(path))?;
        let mut lines = tokio::io::BufReader::with_capacity(1 << 16, file).lines();
        let first = lines
            .next_line()
            .await
            .map_err(io(path))?
            .ok_or_else(|| bad_dump(path, "empty file"))?;
        let header: Header =
            serde_json::from_str(&first).map_err(|e| bad_dump(path, format!("header: {e}")))?;
        Ok(Self {
            lines,
            path: path.to_path_buf(),
            header,
            line: 1,
        })
    }

    pub(super) fn column_names(&self) -> Vec<&str> {
        self.header
            .columns
            .iter()
            .map(|(n, _)| n.as_str())
            .collect()
    }

    pub(super) async fn next_row(&mut self) -> Result<Option<Vec<Value>>> {
        let Some(line) = self.lines.next_line().await.map_err(io(&self.path))? else {
            return Ok(None);
        };
        self.line += 1;
        let at = |e: String| bad_dump(&self.path, format!("line {}: {e}", self.line));
        let values: Vec<serde_json::Value> =
            serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        if values.len() != self.header.columns.len() {
            return Err(at(format!(
                "{} values for {} columns",
                values.len(),
                self.header.columns.len()
            )));
        }
        let row = values
            .iter()
            .zip(&self.header.columns)
            .map(|(v, (_, kind))| from_json(v, *kind))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(at)?;
        Ok(Some(row))
    }
}

/// Writes a table's dump file, hashing what it writes.
pub(super) struct DumpWriter {
    pub(super) file: tokio::io::BufWriter<tokio::fs::File>,
    pub(super) path: std::path::PathBuf,
    pub(super) sha: Sha256,
    pub(super) sum: RowSum,
    /// Where the blob table's `id` is, when this is the blob table.
    pub(super) blob_id_at: Option<usize>,
    pub(super) blob_ids: BTreeSet<String>,
}

impl DumpWriter {
    pub(super) async fn create(path: &Path, table: &Table) -> Result<Self> {
        let file = tokio::fs::File::create(path).await.map_err(io(path))?;
        let columns = table.dumped_columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let mut w = Self {
            file: tokio::io::BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            sha: Sha256::new(),
            sum: RowSum::new(&names),
            blob_id_at: (table.name == BLOB_TABLE)
                .then(|| names.iter().position(|c| *c == "id"))
                .flatten(),
            blob_ids: BTreeSet::new(),
        };
        let header = Header {
            table: table.name.clone(),
            columns: columns
                .iter()
                .map(|c| (c.name.clone(), c.native.kind()))
                .collect(),
        };
        w.line(serde_json::to_string(&header)?).await?;
        Ok(w)
    }

    pub(super) async fn line(&mut self, mut text: String) -> Result<()> {
        text.push('\n');
        self.sha.update(text.as_bytes());
        self.file
            .write_all(text.as_bytes())
            .await
            .map_err(io(&self.path))
    }

    pub(super) async fn finish(mut self, name: &str) -> Result<TableSummary> {
        self.file.flush().await.map_err(io(&self.path))?;
        self.file
            .get_ref()
            .sync_all()
            .await
            .map_err(io(&self.path))?;
        Ok(TableSummary {
            name: name.to_string(),
            rows: self.sum.rows,
            checksum: self.sum.hex(),
            file_sha256: hex::encode(self.sha.finalize()),
        })
    }
}

/// Where [`Conn::for_each_row`] sends rows.
#[async_trait::async_trait]
pub(super) trait RowSink: Send {
    async fn row(&mut self, row: Vec<Value>) -> Result<()>;
}

#[async_trait::async_trait]
impl RowSink for DumpWriter {
    async fn row(&mut self, row: Vec<Value>) -> Result<()> {
        self.sum.add(&row);
        if let Some(Value::Text(id)) = self.blob_id_at.map(|i| &row[i]) {
            self.blob_ids.insert(id.clone());
        }
        let json: Vec<serde_json::Value> = row.iter().map(to_json).collect();
        self.line(serde_json::to_string(&json)?).await
    }
}

#[async_trait::async_trait]
impl RowSink for RowSum {
    async fn row(&mut self, row: Vec<Value>) -> Result<()> {
        self.add(&row);
        Ok(())
    }
}
