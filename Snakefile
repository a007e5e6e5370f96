# Data selection for visual instruction tuning: prepare → base models → proxy fine-tune → features → score →
# select → train targets → evaluate → tables/plots. The embedded default runs on a laptop CPU in minutes; paper
# scale uses the same rules with another config:
#   snakemake --cores all                                   (config/default.yaml)
#   snakemake --cores all --profile slurm                   (config/paper.yaml on a SLURM GPU cluster)
# Each stage is one rules/<stage>.smk, its code selectbench/<stage>/ (README, "Where things are").
import os

from snakemake.utils import min_version, validate

min_version("9.0")


# --configfile files override the embedded default key by key, unless they are complete ("standalone: true",
# as config/paper.yaml): then the default's datasets and models must not leak in underneath. Its syntax is checked
# first, since Snakemake's loader names neither the file nor the line of a YAML error.
if not config.get("standalone"):
    from selectbench.config import check_yaml

    check_yaml(os.path.join(workflow.basedir, "config", "default.yaml"))

    configfile: os.path.join(workflow.basedir, "config", "default.yaml")


# `--config seeds=[0,1,2]` arrives as strings; run_methods / run_benchmarks narrow a run (README, "Everyday runs")
from selectbench.config import check_together, select_run, typed_command_line

typed_command_line(config, workflow.config_settings.config or {})
validate(config, "config/schema.yaml")
check_together(config)
select_run(config)


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/features.smk"
include: "rules/selection.smk"
include: "rules/training.smk"
include: "rules/evaluation.smk"
include: "rules/report.smk"
include: "rules/embedded.smk"


# Seconds-long steps run where Snakemake runs, never queued on a cluster.
localrules:
    all,
    embedded_parts,
    pack_parts,
    select,
    score,
    export_subset,
    feature_gather,
    report,
    overview,
    costs,
    gpu_estimate,


rule all:
    input:
        final_outputs(),
        cost_outputs(),
    default_target: True
