rule sample:
    input:
        job_inputs("sample"),
    output:
        images=paths.samples("{name}")["images"],
        grid=report(
            paths.samples("{name}")["grid"],
            caption="../report/samples.rst",
            category="Samples",
            labels={"run": "{name}"},
        ),
        stats=paths.samples("{name}")["stats"],
    log:
        paths.log("sample", "{name}"),
    benchmark:
        paths.benchmark("sample", "{name}")
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


# A class-conditional prior's run: the same job, which also saves the class asked for
# of every image (plan.sample_job names the same outputs).
rule sample_conditional:
    input:
        job_inputs("sample"),
    output:
        images=paths.samples("{name}")["images"],
        grid=report(
            paths.samples("{name}")["grid"],
            caption="../report/samples.rst",
            category="Samples",
            labels={"run": "{name}"},
        ),
        stats=paths.samples("{name}")["stats"],
        classes=paths.samples("{name}")["classes"],
    log:
        paths.log("sample", "{name}"),
    benchmark:
        paths.benchmark("sample", "{name}")
    wildcard_constraints:
        name=CONDITIONAL_RUNS,
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


ruleorder: sample_conditional > sample


# What an absorbing prior can do beyond sampling: inpainting and larger images.
rule inpaint:
    input:
        job_inputs("inpaint"),
    output:
        grid=report(
            paths.inpainting("{name}")["grid"],
            caption="../report/inpainting.rst",
            category="Priors",
            subcategory="{name}",
        ),
        stats=paths.inpainting("{name}")["stats"],
    log:
        paths.log("inpaint", "{name}"),
    benchmark:
        paths.benchmark("inpaint", "{name}")
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
            paths.large_samples("{name}")["grid"],
            caption="../report/large_samples.rst",
            category="Priors",
            subcategory="{name}",
        ),
        stats=paths.large_samples("{name}")["stats"],
    log:
        paths.log("large_samples", "{name}"),
    benchmark:
        paths.benchmark("large_samples", "{name}")
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
