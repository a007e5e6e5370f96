# Data selection for visual instruction tuning: score → select → train target → evaluate → tables/plots.
# The embedded default runs on a laptop CPU in minutes; paper scale uses the same rules with another config:
#   snakemake --cores all                                   (config/default.yaml)
#   snakemake --cores all --profile slurm                   (config/paper.yaml on a SLURM GPU cluster)
import os

from snakemake.utils import min_version, validate

min_version("9.0")


# --configfile files override the embedded default key by key, unless they are complete ("standalone: true",
# as config/paper.yaml): then the default's datasets and models must not leak in underneath.
if not config.get("standalone"):

    configfile: os.path.join(workflow.basedir, "config", "default.yaml")


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/features.smk"
include: "rules/selection.smk"
include: "rules/target.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
