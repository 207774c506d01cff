stage = StageRule("report")


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
        stage.log,
    benchmark:
        stage.benchmark
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=1000,
        gpu=0,
        runtime=15,
    params:
        values=stage.params,
    shell:
        stage_shell("report")
