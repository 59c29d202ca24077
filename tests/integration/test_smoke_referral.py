"""A suspected-crime clue crosses to the police with its copy to the procuratorate, and both
receipts come back to the bureau."""

from tests.fixtures.bodies import sample_body


def test_clue_transfer_is_receipted_by_police_and_procuratorate(bus):
    bus.start("medical_security", "public_security", "procuratorate")
    with bus.waiter("medical_security", kind="receipt", status="receipt") as first, \
            bus.rpc() as rpc:
        sent = rpc.medical_security.refer_clue(sample_body("clue_transfer"))
    kinds = sorted(m["kind"] for m in sent["messages"])
    assert kinds == ["clue_transfer", "copy_notice"]
    assert first.get()["status"] == "receipt"
