rule report:
    input:
        plan.report_inputs(P),
    output:
        html=paths.report()["html"],
        markdown=paths.report()["markdown"],
        table=report(
            paths.report()["table"],
            caption="../report/runs_table.rst",
            category="Comparison",
        ),
        fd_vs_steps=report(
            paths.report()["fd_vs_steps"],
            caption="../report/fd_vs_steps.rst",
            category="Comparison",
        ),
    log:
        paths.log("report"),
    benchmark:
        paths.benchmark("report")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
        runtime=15,
    params:
        values=job_params("report"),
    shell:
        f"twostage{PROFILE_ARGS} report > {{log}} 2>&1"
