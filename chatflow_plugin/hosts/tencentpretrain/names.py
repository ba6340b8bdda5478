"""The names the plugin registers with TencentPretrain, and the variable that locates the host."""

DATA_PROCESSOR = "dynamic_mixture"     # str2dataset / str2dataloader / str2trainer key (--data_processor)
TARGET = "chatflow_instruction"        # str2target key (--target)
HOME_VARIABLE = "TENCENTPRETRAIN_HOME"  # a clone of github.com/Tencent/TencentPretrain
GIVEN = "chatflow_given_options"        # namespace attribute: option names given on the command line
