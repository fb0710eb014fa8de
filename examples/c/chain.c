/*
 * A llama.cpp program that mixes llama.cpp's samplers and entropix's in one
 * chain and generates text with it.
 *
 *   chain MODEL.gguf [N_PREDICT] [PROMPT]
 *
 * Build (see README): cc -Wall -Wextra -Werror -Iinclude -I<llama include>
 *   chain.c -L<target>/release -lentropix_sampler -L<llama lib> -lllama
 */
#define _POSIX_C_SOURCE 200809L

#include "entropix_sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "chain: %s\n", what);
    return 1;
}

/* Prints the sizes of the shared types, so a test can compare them with
 * the Rust side's view. */
static void print_layout(void) {
    printf("layout: token_data=%zu token_data_array=%zu sampler=%zu\n",
           sizeof(llama_token_data), sizeof(llama_token_data_array), sizeof(struct llama_sampler));
}

/* Invalid parameters give NULL and a readable reason. */
static int check_bad_params(void) {
    entropix_top_k_params ok = entropix_top_k_default_params();
    struct llama_sampler *s = entropix_sampler_init_top_k(&ok);
    if (s == NULL || !entropix_sampler_is_ours(s)) {
        return fail("top-k with default params was not created");
    }
    llama_sampler_free(s);

    entropix_temperature_params bad = entropix_temperature_default_params();
    bad.temp = 0.0f / 0.0f; /* NaN */
    if (entropix_sampler_init_temperature(&bad) != NULL) {
        return fail("a NaN temperature was accepted");
    }
    printf("rejected: %s\n", entropix_last_error());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [N_PREDICT] [PROMPT]\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    const int n_predict = argc > 2 ? atoi(argv[2]) : 32;
    const char *prompt = argc > 3 ? argv[3] : "The capital of France is";

    printf("entropix %s\n", entropix_version());
    print_layout();
    if (check_bad_params() != 0) {
        return 1;
    }

    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(model_path, llama_model_default_params());
    if (model == NULL) {
        return fail("cannot load the model");
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = 512;
    cparams.n_batch = 512;
    cparams.no_perf = true;
    /* ggml's threads spin while waiting: never more than the cores. */
    const long n_cores = sysconf(_SC_NPROCESSORS_ONLN);
    cparams.n_threads = cparams.n_threads_batch = n_cores > 0 ? (int32_t) n_cores : 1;
    struct llama_context *ctx = llama_init_from_model(model, cparams);
    if (ctx == NULL) {
        return fail("cannot create the context");
    }

    const int n_prompt = -llama_tokenize(vocab, prompt, (int32_t) strlen(prompt), NULL, 0, true, true);
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t) n_prompt);
    if (tokens == NULL || llama_tokenize(vocab, prompt, (int32_t) strlen(prompt), tokens, n_prompt, true, true) < 0) {
        return fail("cannot tokenize the prompt");
    }

    /* llama.cpp's top-k and min-p, entropix's temperature and dist. The
     * chain owns every sampler added to it. */
    struct llama_sampler *chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(chain, llama_sampler_init_top_k(40));
    entropix_temperature_params temp = entropix_temperature_default_params();
    temp.temp = 0.8f;
    struct llama_sampler *ours_temp = entropix_sampler_init_temperature(&temp);
    if (ours_temp == NULL) {
        return fail(entropix_last_error());
    }
    llama_sampler_chain_add(chain, ours_temp);
    llama_sampler_chain_add(chain, llama_sampler_init_min_p(0.05f, 1));
    entropix_dist_params dist = entropix_dist_default_params();
    dist.seed = 42;
    struct llama_sampler *ours_dist = entropix_sampler_init_dist(&dist);
    if (ours_dist == NULL) {
        return fail(entropix_last_error());
    }
    llama_sampler_chain_add(chain, ours_dist);

    printf("chain:");
    for (int i = 0; i < llama_sampler_chain_n(chain); i++) {
        struct llama_sampler *s = llama_sampler_chain_get(chain, i);
        printf(" %s%s", llama_sampler_name(s), entropix_sampler_is_ours(s) ? "(entropix)" : "");
    }
    printf("\n");

    printf("text: %s", prompt);
    llama_batch batch = llama_batch_get_one(tokens, n_prompt);
    int n_generated = 0;
    llama_token token;
    for (; n_generated < n_predict; n_generated++) {
        if (llama_decode(ctx, batch) != 0) {
            return fail("llama_decode failed");
        }
        token = llama_sampler_sample(chain, ctx, -1);
        if (llama_vocab_is_eog(vocab, token)) {
            break;
        }
        char piece[256];
        const int len = llama_token_to_piece(vocab, token, piece, sizeof piece, 0, true);
        if (len > 0) {
            fwrite(piece, 1, (size_t) len, stdout);
        }
        batch = llama_batch_get_one(&token, 1);
    }
    printf("\ngenerated: %d\n", n_generated);

    llama_sampler_free(chain);
    free(tokens);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
