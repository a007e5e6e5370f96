rule report:
    """Long-format table, Markdown/LaTeX summaries and the relative-performance plot of one dataset."""
    input:
        rows=eval_files,
        per_item=item_files,
        data="results/{dataset}/data",
    output:
        table=report("results/tables/{dataset}.csv", caption="../report/table.rst", category="Tables",
                     labels={"dataset": "{dataset}", "table": "results (long format)"}),
        provenance="results/tables/{dataset}.provenance.json",
        summary="results/tables/{dataset}.summary.json",
        md="results/tables/{dataset}.md",
        tex="results/tables/{dataset}.tex",
        comparisons=report("results/tables/{dataset}_comparisons.csv", caption="../report/comparisons.rst",
                           category="Tables", labels={"dataset": "{dataset}", "table": "paired comparisons"}),
        comparisons_md="results/tables/{dataset}_comparisons.md",
        published_md="results/tables/{dataset}_published.md",
        published_tex="results/tables/{dataset}_published.tex",
        published_csv=report("results/tables/{dataset}_published.csv", caption="../report/published.rst",
                             category="Tables", labels={"dataset": "{dataset}", "table": "published side by side"}),
        png=report("results/plots/{dataset}_relative.png", caption="../report/relative.rst", category="Plots",
                   labels={"dataset": "{dataset}", "plot": "Rel. % vs subset size"}),
        pdf="results/plots/{dataset}_relative.pdf",
    params:
        benchmarks=lambda w: config["datasets"][w.dataset]["benchmarks"],
        published=str(Path(workflow.basedir) / "reference" / "published.csv"),
        reference=REFERENCE,
        tables=lambda w, output: os.path.dirname(output.table),
        plots=lambda w, output: os.path.dirname(output.png),
        margin=config["report"]["chance_margin"],
        task_aware=lambda w: " ".join(TASK_AWARE),
        bootstrap=config["report"].get("bootstrap", 1000),
        bootstrap_seed=config["report"].get("bootstrap_seed", 0),
        baseline=config["report"].get("baseline", "random"),
        compare=lambda w: " ".join(shlex.quote(p) for p in config["report"].get("compare", [])),
        # the whole effective config, so the tables say exactly what produced them (and follow any change to it)
        config=lambda w: settings("config", {"sha256": config_digest(), "config": config}),
    resources:
        **rule_resources("report"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/report.log",
    benchmark:
        "results/benchmarks/{dataset}/report.tsv"
    shell:
        "python -m selectbench.cli report --dataset {wildcards.dataset} --inputs {input.rows} --reference {params.reference}"
        " --benchmarks {params.benchmarks} --tables {params.tables} --plots {params.plots}"
        " --published {params.published} --chance-margin {params.margin} --task-aware {params.task_aware}"
        " --items {input.per_item} --bootstrap {params.bootstrap} --bootstrap-seed {params.bootstrap_seed}"
        " --baseline {params.baseline} --compare {params.compare}"
        " --config {params.config} --manifest {input.data}/manifest.json"
        " > {log} 2>&1"


rule overview:
    """Every dataset side by side: Rel. % per method and ratio, one column (and one plot panel) per dataset."""
    input:
        summaries=[f"results/tables/{d}.summary.json" for d in config["datasets"]],
    output:
        md=report("results/tables/overview.md", caption="../report/overview.rst", category="Tables",
                  labels={"dataset": "all", "table": "Rel. % by dataset"}),
        csv="results/tables/overview.csv",
        png=report("results/plots/overview.png", caption="../report/overview.rst", category="Plots",
                   labels={"dataset": "all", "plot": "Rel. % by dataset"}),
        pdf="results/plots/overview.pdf",
    params:
        reference=REFERENCE,
        tables=lambda w, output: os.path.dirname(output.md),
        plots=lambda w, output: os.path.dirname(output.png),
    resources:
        **rule_resources("report"),
    conda:
        CONDA_ENV
    log:
        "results/logs/overview.log",
    benchmark:
        "results/benchmarks/overview.tsv"
    shell:
        "python -m selectbench.cli overview --summaries {input.summaries} --reference {params.reference}"
        " --tables {params.tables} --plots {params.plots} > {log} 2>&1"


rule costs:
    """Compute of each method instance (shared work, scoring, selection, subset training) from the jobs' own
    benchmark records, against the Rel. % it buys: after the dataset's report, when every job has run."""
    input:
        table="results/tables/{dataset}.csv",
    output:
        csv="results/tables/{dataset}_costs.csv",
        md=report("results/tables/{dataset}_costs.md", caption="../report/costs.rst", category="Tables",
                  labels={"dataset": "{dataset}", "table": "cost per method"}),
        png=report("results/plots/{dataset}_cost.png", caption="../report/costs.rst", category="Plots",
                   labels={"dataset": "{dataset}", "plot": "Rel. % vs cost"}),
        pdf="results/plots/{dataset}_cost.pdf",
    params:
        plan=lambda w: settings(f"costs.{w.dataset}", cost_plan(w.dataset)),
        records=lambda w: f"results/benchmarks/{w.dataset}",
        benchmarks=lambda w: config["datasets"][w.dataset]["benchmarks"],
        margin=config["report"]["chance_margin"],
        tables=lambda w, output: os.path.dirname(output.csv),
        plots=lambda w, output: os.path.dirname(output.png),
    resources:
        **rule_resources("costs"),
    conda:
        CONDA_ENV
    log:
        "results/logs/{dataset}/costs.log",
    benchmark:
        "results/benchmarks/{dataset}/costs.tsv"
    shell:
        "python -m selectbench.cli costs --table {input.table} --plan {params.plan} --records {params.records}"
        " --benchmarks {params.benchmarks} --chance-margin {params.margin} --tables {params.tables}"
        " --plots {params.plots} > {log} 2>&1"



rule gpu_estimate:
    """GPU-hours the configured run will spend, per job, rule and method instance, priced from the throughput
    figures in the config's gpu_estimate section, before any job runs (a target: snakemake gpu_estimate)."""
    output:
        md="results/plan/gpu_hours.md",
        csv="results/plan/gpu_hours.csv",
    params:
        plans=lambda w: settings("gpu_estimate.plans", [cost_plan(d) for d in config["datasets"]]),
        config=lambda w: settings("gpu_estimate.config", config),
    conda:
        CONDA_ENV
    log:
        "results/logs/gpu_estimate.log",
    shell:
        "python -m selectbench.cli gpu-estimate --plans {params.plans} --config {params.config}"
        " --csv {output.csv} --md {output.md} 2> {log}"
