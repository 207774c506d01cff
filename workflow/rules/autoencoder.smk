rule train_autoencoder:
    input:
        job_inputs("train_autoencoder"),
    output:
        model="results/autoencoders/{name}/model.pt",
        recon=report(
            "results/autoencoders/{name}/recon.png",
            caption="../report/recon.rst",
            category="Autoencoders",
            subcategory="{name}",
        ),
        metrics="results/autoencoders/{name}/metrics.json",
        curve="results/autoencoders/{name}/train_log.csv",
    log:
        "results/logs/train_autoencoder/{name}.log",
    benchmark:
        "results/benchmarks/train_autoencoder/{name}.tsv"
    priority: job_priority("train_autoencoder")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=training_gpus("autoencoders"),
        runtime=2880,
    params:
        values=job_params("train_autoencoder"),
    shell:
        stage_cmd("train-autoencoder")


rule encode:
    input:
        job_inputs("encode"),
    output:
        train="results/latents/{name}/train.npy",
        val="results/latents/{name}/val.npy",
    log:
        "results/logs/encode/{name}.log",
    benchmark:
        "results/benchmarks/encode/{name}.tsv"
    priority: job_priority("encode")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=0,
        runtime=120,
    params:
        values=job_params("encode"),
    shell:
        stage_cmd("encode")


rule evaluate_reconstruction:
    input:
        job_inputs("evaluate_reconstruction"),
    output:
        metrics="results/eval/autoencoders/{name}/metrics.json",
        usage="results/eval/autoencoders/{name}/usage.png",
        grid="results/eval/autoencoders/{name}/recon_grid.png",
    log:
        "results/logs/evaluate_reconstruction/{name}.log",
    benchmark:
        "results/benchmarks/evaluate_reconstruction/{name}.tsv"
    priority: job_priority("evaluate_reconstruction")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=job_params("evaluate_reconstruction"),
    shell:
        stage_cmd("evaluate-reconstruction")
