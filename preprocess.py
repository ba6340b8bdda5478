"""TencentPretrain's preprocess.py with the chatflow plugin registered (run from any directory).

    python preprocess.py --mixture_config models/mixtures/chatflow_table1.json --spm_model_path T.model \
        --dataset_path D --data_processor dynamic_mixture --processes_num 8 [--seq_length 2048]

Every option of the host's own preprocess.py works as there; the host is found through
TENCENTPRETRAIN_HOME (a clone of github.com/Tencent/TencentPretrain). See docs/tencentpretrain.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chatflow_plugin.hosts.tencentpretrain.launch import run_host_script  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_host_script("preprocess"))
