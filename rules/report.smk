rule report:
    """Long-format table, Markdown/LaTeX summaries and the relative-performance plot of one dataset."""
    input:
        rows=eval_files,
        per_item=item_files,
        data="results/{dataset}/data",
    output:
        table="results/tables/{dataset}.csv",
        provenance="results/tables/{dataset}.provenance.json",
        md="results/tables/{dataset}.md",
        tex="results/tables/{dataset}.tex",
        comparisons="results/tables/{dataset}_comparisons.csv",
        comparisons_md="results/tables/{dataset}_comparisons.md",
        published_md="results/tables/{dataset}_published.md",
        published_tex="results/tables/{dataset}_published.tex",
        published_csv="results/tables/{dataset}_published.csv",
        png="results/plots/{dataset}_relative.png",
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
        " --baseline {params.baseline}"
        " > {log} 2>&1"
