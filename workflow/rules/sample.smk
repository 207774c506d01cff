stage = StageRule("sample")


rule sample:
    input:
        stage.input,
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
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=240,
    params:
        values=stage.params,
    shell:
        stage_shell("sample")


# A class-conditional prior's run: the same job, which also saves the class asked for
# of every image (plan.sample_job names the same outputs).
rule sample_conditional:
    input:
        stage.input,
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
        stage.log,
    benchmark:
        stage.benchmark
    wildcard_constraints:
        name=CONDITIONAL_RUNS,
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=240,
    params:
        values=stage.params,
    shell:
        stage_shell("sample")


ruleorder: sample_conditional > sample


# What an absorbing prior can do beyond sampling: inpainting and larger images.
stage = StageRule("inpaint")


rule inpaint:
    input:
        stage.input,
    output:
        grid=report(
            paths.inpainting("{name}")["grid"],
            caption="../report/inpainting.rst",
            category="Priors",
            subcategory="{name}",
        ),
        stats=paths.inpainting("{name}")["stats"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=60,
    params:
        values=stage.params,
    shell:
        stage_shell("inpaint")


stage = StageRule("large_samples")


rule large_samples:
    input:
        stage.input,
    output:
        grid=report(
            paths.large_samples("{name}")["grid"],
            caption="../report/large_samples.rst",
            category="Priors",
            subcategory="{name}",
        ),
        stats=paths.large_samples("{name}")["stats"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
        runtime=120,
    params:
        values=stage.params,
    shell:
        stage_shell("large_samples")
