"""TencentPretrain's pretrain.py with the chatflow plugin registered (run from any directory).

    python pretrain.py --dataset_path D --spm_model_path T.model --config_path models/llama2/7b_config.json \
        --output_model_path O --data_processor dynamic_mixture --target chatflow_instruction \
        --total_steps S --batch_size B [--deepspeed --deepspeed_config models/deepspeed_zero3_config.json]

Launch data-parallel runs with torchrun (or the deepspeed launcher). Every option of the host's own
pretrain.py works as there; see docs/tencentpretrain.md for the plugin's few options.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chatflow_plugin.hosts.tencentpretrain.launch import run_host_script  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_host_script("pretrain"))
