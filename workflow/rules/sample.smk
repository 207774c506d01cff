rule sample:
    input:
        job_inputs("sample"),
    output:
        images="results/samples/{name}/images.npy",
        grid=report(
            "results/samples/{name}/grid.png",
            caption="../report/samples.rst",
            category="Samples",
            labels={"run": "{name}"},
        ),
        stats="results/samples/{name}/stats.json",
    log:
        "results/logs/sample/{name}.log",
    benchmark:
        "results/benchmarks/sample/{name}.tsv"
    priority: job_priority("sample")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=240,
    params:
        values=job_params("sample"),
    shell:
        stage_cmd("sample")


# What an absorbing prior can do beyond sampling: inpainting and larger images.
rule inpaint:
    input:
        job_inputs("inpaint"),
    output:
        grid=report(
            "results/inpainting/{name}/grid.png",
            caption="../report/inpainting.rst",
            category="Priors",
            subcategory="{name}",
        ),
        stats="results/inpainting/{name}/stats.json",
    log:
        "results/logs/inpaint/{name}.log",
    benchmark:
        "results/benchmarks/inpaint/{name}.tsv"
    priority: job_priority("inpaint")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=60,
    params:
        values=job_params("inpaint"),
    shell:
        stage_cmd("inpaint")


rule large_samples:
    input:
        job_inputs("large_samples"),
    output:
        grid=report(
            "results/large_samples/{name}/grid.png",
            caption="../report/large_samples.rst",
            category="Priors",
            subcategory="{name}",
        ),
        stats="results/large_samples/{name}/stats.json",
    log:
        "results/logs/large_samples/{name}.log",
    benchmark:
        "results/benchmarks/large_samples/{name}.tsv"
    priority: job_priority("large_samples")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=120,
    params:
        values=job_params("large_samples"),
    shell:
        stage_cmd("large-samples")
