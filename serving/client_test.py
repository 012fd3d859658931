"""The example client against the real packaged models (both layouts), served in-process."""

from serving.client import main
from serving.server import ServerConfig
from serving.testsupport import running_server

MODELS = ("digits_cnn_torch", "digits_cnn_keras")


def test_client_gets_correct_predictions_from_real_models(capsys) -> None:
    config = ServerConfig(model_dirs=tuple(f"models/{m}" for m in MODELS), port=0, insecure=True)
    with running_server(config) as server:
        for model in MODELS:
            assert main(["--port", str(server.port), "--model", model, "--count", "64"]) == 0
            assert f"{model}: " in capsys.readouterr().out
        # A threshold the model cannot meet makes the smoke test fail.
        assert (
            main(["--port", str(server.port), "--model", MODELS[0], "--min-accuracy", "1.01"]) == 1
        )
