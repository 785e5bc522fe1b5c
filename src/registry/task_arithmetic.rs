//! The generalized task-arithmetic family as rows of one table (mergekit's registry):
//! task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties, della and
//! della_linear differ only in sparsifier, consensus and default normalize/rescale. The
//! kernel is `merge/methods/task_arithmetic.rs`.
use super::{BaseUse, Compat, Kernel, MethodSpec, ParamSpec};

/// Which sparsifier a task-arithmetic method applies to each task vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sparsifier {
    /// TIES: keep the `floor(density·n)` largest |δ| of the whole tensor (at least one).
    Magnitude,
    /// DARE: keep each element with probability `density`.
    Random,
    /// Model Breadcrumbs: drop the `floor(gamma·n)` largest and the smallest, keep
    /// `floor(density·n)`.
    MagnitudeOutliers,
    /// DELLA: per row, keep with probability ramping from `density−ε` (smallest |δ|) to
    /// `density+ε` (largest).
    DellaMagprune,
}

/// One row of the family table.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub name: &'static str,
    pub sparsifier: Option<Sparsifier>,
    /// TIES sign consensus ("sum" election).
    pub consensus: bool,
    pub default_normalize: bool,
    pub default_rescale: bool,
}

const fn row(
    name: &'static str,
    pretty_name: &'static str,
    paper: &'static str,
    sparsifier: Option<Sparsifier>,
    consensus: bool,
    default_normalize: bool,
    default_rescale: bool,
) -> MethodSpec {
    MethodSpec {
        name,
        pretty_name,
        paper,
        base: BaseUse::Required,
        stochastic: matches!(
            sparsifier,
            Some(Sparsifier::Random | Sparsifier::DellaMagprune)
        ),
        min_models: 1,
        max_models: None,
        kernel: Kernel::TaskArithmetic(Variant {
            name,
            sparsifier,
            consensus,
            default_normalize,
            default_rescale,
        }),
    }
}

const TA_PAPER: &str = "Editing Models with Task Arithmetic (arXiv:2212.04089)";
const TIES_PAPER: &str =
    "TIES-Merging: Resolving Interference When Merging Models (arXiv:2306.01708)";
const DARE_PAPER: &str = "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch (arXiv:2311.03099)";
const BC_PAPER: &str =
    "Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks (arXiv:2312.06795)";
const DELLA_PAPER: &str = "DELLA-Merging: Reducing Interference in Model Merging through Magnitude-Based Sampling (arXiv:2406.11617)";

use Sparsifier::{DellaMagprune, Magnitude, MagnitudeOutliers, Random};
pub const TASK_ARITHMETIC: MethodSpec = row(
    "task_arithmetic",
    "Task Arithmetic",
    TA_PAPER,
    None,
    false,
    false,
    false,
);
pub const TIES: MethodSpec = row(
    "ties",
    "TIES",
    TIES_PAPER,
    Some(Magnitude),
    true,
    true,
    false,
);
pub const DARE_TIES: MethodSpec = row(
    "dare_ties",
    "DARE TIES",
    DARE_PAPER,
    Some(Random),
    true,
    false,
    true,
);
pub const DARE_LINEAR: MethodSpec = row(
    "dare_linear",
    "Linear DARE",
    DARE_PAPER,
    Some(Random),
    false,
    false,
    true,
);
pub const BREADCRUMBS: MethodSpec = row(
    "breadcrumbs",
    "Model Breadcrumbs",
    BC_PAPER,
    Some(MagnitudeOutliers),
    false,
    false,
    false,
);
pub const BREADCRUMBS_TIES: MethodSpec = row(
    "breadcrumbs_ties",
    "Model Breadcrumbs with TIES",
    BC_PAPER,
    Some(MagnitudeOutliers),
    true,
    false,
    false,
);
pub const DELLA: MethodSpec = row(
    "della",
    "DELLA",
    DELLA_PAPER,
    Some(DellaMagprune),
    true,
    true,
    true,
);
pub const DELLA_LINEAR: MethodSpec = row(
    "della_linear",
    "Linear DELLA",
    DELLA_PAPER,
    Some(DellaMagprune),
    false,
    false,
    true,
);

fn spec(
    name: &'static str,
    per_model: bool,
    default: Option<f64>,
    boolean: bool,
    range: (f64, f64),
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default,
        required: false,
        doc,
        boolean,
        range,
        domain: None,
    }
}

pub(crate) fn bool_value(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

impl Variant {
    pub fn is_della(&self) -> bool {
        self.sparsifier == Some(DellaMagprune)
    }

    pub fn params(&self, compat: Compat) -> Vec<ParamSpec> {
        let lambda_per_model = match compat {
            Compat::Mergekit => Some(false),
            Compat::Mergekit2024 if self.is_della() => Some(true),
            Compat::Mergekit2024 => None,
        };
        let mut p = vec![
            spec(
                "int8_mask",
                false,
                Some(0.0),
                true,
                (0.0, 1.0),
                "store sign masks as int8 (no effect on results)",
            ),
            spec(
                "normalize",
                false,
                bool_value(self.default_normalize),
                true,
                (0.0, 1.0),
                "divide by the sum of (agreeing) weights",
            ),
            spec(
                "rescale",
                false,
                bool_value(self.default_rescale),
                true,
                (0.0, 1.0),
                "rescale kept values after sparsification",
            ),
        ];
        if let Some(per_model) = lambda_per_model {
            p.push(spec(
                "lambda",
                per_model,
                Some(1.0),
                false,
                (0.0, 2.0),
                "scale of the merged task vector",
            ));
        }
        p.push(ParamSpec {
            name: "weight",
            per_model: true,
            default: None,
            required: true,
            doc: "this model's weight",
            boolean: false,
            range: (-1.0, 2.0),
            domain: None,
        });
        p.push(
            spec(
                "density",
                true,
                Some(1.0),
                false,
                (0.0, 1.0),
                "fraction of the task vector kept",
            )
            .within(0.0, 1.0),
        );
        if self.sparsifier == Some(MagnitudeOutliers) {
            p.push(
                spec(
                    "gamma",
                    true,
                    Some(0.01),
                    false,
                    (0.0, 0.5),
                    "fraction of largest magnitudes dropped as outliers",
                )
                .within(0.0, 1.0),
            );
        }
        if self.is_della() {
            p.push(
                spec(
                    "epsilon",
                    true,
                    Some(0.15),
                    false,
                    (0.0, 0.5),
                    "keep-probability half-range across magnitude ranks",
                )
                .within(0.0, 1.0),
            );
        }
        p
    }
}

/// Check DELLA's ε against density for one model (mergekit's ValueError, with context).
pub fn check_della(density: f64, epsilon: f64) -> Result<(), String> {
    if density <= 0.0 || density >= 1.0 {
        return Ok(());
    }
    if epsilon < 0.0 {
        return Err(format!("epsilon must be ≥ 0, got {epsilon}"));
    }
    if density - epsilon <= 0.0 || density + epsilon >= 1.0 {
        return Err(format!(
            "density ± epsilon must lie inside (0, 1): density {density}, epsilon {epsilon} gives \
             [{:.4}, {:.4}]; lower epsilon below min(density, 1 − density) = {:.4}",
            density - epsilon,
            density + epsilon,
            density.min(1.0 - density)
        ));
    }
    Ok(())
}
