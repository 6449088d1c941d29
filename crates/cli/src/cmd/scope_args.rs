//! Scope options shared by `lpgw start` and `lpgw stream`: which pipelines, which graph,
//! which load parameters and input mode. They become the start's `params`, which the
//! gateway reads (`pipeline_ids`, `graph`, `load_params`, `input_mode`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Map, Value};

/// Scope start options.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ScopeArgs {
    /// Scope pipelines to load and run, in order (comma separated), e.g. `gray`. Default:
    /// the gateway's configured pipelines for the model.
    #[arg(long = "pipeline", value_delimiter = ',')]
    pub(crate) pipelines: Vec<String>,
    /// A Scope graph (a JSON file) to run instead of the linear chain of the pipelines.
    #[arg(long)]
    pub(crate) graph: Option<PathBuf>,
    /// Load parameters for the pipelines (a JSON object).
    #[arg(long)]
    pub(crate) load_params: Option<String>,
    /// `video` (frames in, processed frames out) or `text` (output from the prompt alone).
    #[arg(long, value_parser = ["video", "text"])]
    pub(crate) input_mode: Option<String>,
}

impl ScopeArgs {
    /// Puts the options into `params` (they win over the same keys already there).
    pub(crate) fn merge_into(&self, params: &mut Map<String, Value>) -> anyhow::Result<()> {
        let ids: Vec<String> = self
            .pipelines
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if !ids.is_empty() {
            params.insert("pipeline_ids".into(), ids.into());
        }
        if let Some(path) = &self.graph {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let graph: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            anyhow::ensure!(graph.is_object(), "the graph must be a JSON object");
            params.insert("graph".into(), graph);
        }
        if let Some(lp) = &self.load_params {
            let v: Value = serde_json::from_str(lp).context("--load-params is not JSON")?;
            anyhow::ensure!(v.is_object(), "--load-params must be a JSON object");
            params.insert("load_params".into(), v);
        }
        if let Some(m) = &self.input_mode {
            params.insert("input_mode".into(), m.clone().into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scope: ScopeArgs,
    }

    #[test]
    fn options_become_start_params() {
        let dir = std::env::temp_dir().join(format!("lpgw-scope-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let g = dir.join("g.json");
        std::fs::write(
            &g,
            r#"{"nodes":[{"id":"output","type":"sink"}],"edges":[]}"#,
        )
        .unwrap();
        let cli = Cli::parse_from([
            "x",
            "--pipeline",
            "gray,passthrough",
            "--graph",
            g.to_str().unwrap(),
            "--load-params",
            r#"{"height":256}"#,
            "--input-mode",
            "video",
        ]);
        let mut p = Map::new();
        p.insert("pipeline_ids".into(), json!(["old"]));
        cli.scope.merge_into(&mut p).unwrap();
        assert_eq!(p["pipeline_ids"], json!(["gray", "passthrough"]));
        assert_eq!(p["graph"]["nodes"][0]["id"], "output");
        assert_eq!(p["load_params"], json!({"height": 256}));
        assert_eq!(p["input_mode"], "video");
        let bad = Cli::parse_from(["x", "--load-params", "[1]"]);
        assert!(bad.scope.merge_into(&mut Map::new()).is_err());
        assert!(Cli::try_parse_from(["x", "--input-mode", "audio"]).is_err());
        let missing = Cli::parse_from(["x", "--graph", "/nonexistent/g.json"]);
        assert!(missing.scope.merge_into(&mut Map::new()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
