// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice The EIP-3009 entry point the router pulls funds with: FiatToken v2.2's `bytes`
///         signature form, which verifies ECDSA signatures of EOAs and ERC-1271 signatures of
///         smart accounts alike.
interface IReceiveWithAuthorization {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;
}

/// @title PaymentRouter
/// @notice Settles merchant payments made with EIP-3009 authorizations: pulls the payer's
///         authorized amount, pays the merchant the amount minus the fee and the fee collector
///         the fee, and emits one event naming the invoice. Refunds travel the same way back,
///         authorized by the merchant.
/// @dev Security argument, in the order a reviewer should check it:
///
///      1. The payer's signature fixes every term. The EIP-3009 nonce the payer signs is
///         `paymentNonce(p)`, the hash of (invoice, merchant, token, amount, fee, this router,
///         chain id), and the router recomputes it from the calldata. A relayer that changes the
///         merchant, the fee, the amount or the token produces a different nonce, so the token
///         rejects the signature: whoever submits cannot redirect money or raise the fee.
///      2. It cannot be front-run. `receiveWithAuthorization` only pays `to == msg.sender`, and
///         `to` is this router: nobody can take the signature and move the funds elsewhere,
///         and a copy submitted by someone else settles the same terms (same merchant, same fee).
///      3. Terms settle once. The settlement is keyed by the payer-agnostic hash of the terms
///         (the same `paymentNonce`), recorded before any external call: a second payer signing
///         identical terms (two family members tapping "pay") is refused before money moves.
///         Keying by the terms rather than by the bare invoice id is deliberate: with an
///         invoice-id key anyone could front-run a visible payment with a one-unit payment to the
///         same merchant and invoice id, and block every real payment for free. With the terms as
///         key, "squatting" an invoice means paying the merchant exactly what the invoice asks.
///         The off-chain side keeps one set of terms per invoice id (a new quote is a new
///         invoice) and treats a second settlement of an invoice id as an over-payment.
///      4. The router holds nothing between transactions: it pulls `amount` and pushes exactly
///         `amount` out (merchant + fee collector, or payer for a refund) in the same call.
///         The owner can only change where future fees go; it cannot move anyone's funds.
///      5. Refunds are bounded by the settlement record: the refund's signature (by the
///         merchant, in the token's own domain) names the payment's terms, the recorded payer,
///         a refund id and the amount; cumulative refunds never exceed the amount paid.
///      6. Any token address may be named, so an event of this router proves only that *this
///         token* moved: readers must check `token` against the tokens they accept. A hostile
///         token cannot touch other tokens' balances (the router holds none) and cannot reenter
///         (every entry point is `nonReentrant`; `settleFromBatch` only accepts the router).
contract PaymentRouter is Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice What the payer agrees to: pay `amount` of `token`, of which `fee` goes to the fee
    ///         collector and the rest to `merchant`, for `invoiceId`.
    struct Payment {
        bytes32 invoiceId;
        address merchant;
        address token;
        uint256 amount;
        uint256 fee;
    }

    /// @notice An EIP-3009 `ReceiveWithAuthorization` signature by `from`, to this router.
    struct Authorization {
        address from;
        uint256 validAfter;
        uint256 validBefore;
        bytes signature;
    }

    /// @notice A (partial) refund of a settled payment to its recorded payer, paid by the merchant.
    struct Refund {
        Payment payment;
        address payer;
        bytes32 refundId;
        uint256 amount;
    }

    bytes32 public constant PAYMENT_TYPEHASH = keccak256(
        "seiwallet.PaymentRouter.Payment(bytes32 invoiceId,address merchant,address token,"
        "uint256 amount,uint256 fee,address router,uint256 chainId)"
    );

    bytes32 public constant REFUND_TYPEHASH = keccak256(
        "seiwallet.PaymentRouter.Refund(bytes32 paymentId,address payer,bytes32 refundId,"
        "uint256 amount,address router,uint256 chainId)"
    );

    /// @dev Longest revert reason a batch keeps per failed payment: FiatToken's reasons fit, and
    ///      a hostile token cannot make the batch pay for copying megabytes of return data.
    uint256 private constant MAX_REASON_BYTES = 256;

    /// @dev A batch entry that fails leaving less than 1/STARVED_FRACTION of the gas it had is
    ///      taken for starved (see `payBatch`). Covers call chains up to ~18 frames deep.
    uint256 private constant STARVED_FRACTION = 4;

    /// @notice Where fees go. Changed only by the owner; affects only later settlements.
    address public feeCollector;

    /// @notice Who paid a settled payment, by payment id (`paymentNonce`); zero if unsettled.
    mapping(bytes32 paymentId => address payer) public payerOf;

    /// @notice Cumulative refunds of a payment, by payment id, in token base units.
    mapping(bytes32 paymentId => uint256 amount) public refunded;

    event PaymentSettled(
        bytes32 indexed invoiceId,
        address indexed payer,
        address indexed merchant,
        address token,
        uint256 amount,
        uint256 fee
    );
    event PaymentFailed(bytes32 indexed invoiceId, address indexed payer, bytes reason);
    event PaymentRefunded(
        bytes32 indexed invoiceId,
        bytes32 indexed refundId,
        address indexed merchant,
        address payer,
        address token,
        uint256 amount
    );
    event FeeCollectorChanged(address indexed previousCollector, address indexed newCollector);

    /// @notice These exact payment terms are already settled (by this or another payer).
    error InvoiceAlreadySettled(bytes32 invoiceId);
    /// @notice The fee is larger than the amount paid.
    error FeeExceedsAmount();
    /// @notice An address that must be set is zero.
    error ZeroAddress();
    /// @notice A payment or refund of nothing.
    error ZeroAmount();
    /// @notice No settled payment with these terms and this payer.
    error UnknownPayment(bytes32 invoiceId);
    /// @notice The refund is larger than what is left to refund of the payment.
    error RefundExceedsPayment(bytes32 invoiceId, uint256 refundable, uint256 requested);
    /// @notice `settleFromBatch` was called by someone other than the router itself.
    error OnlySelf();
    /// @notice `payBatch` got a different number of payments and authorizations.
    error LengthMismatch();
    /// @notice A payment of the batch ran out of gas: resend the batch with more gas.
    error BatchGasTooLow();
    /// @notice The refund's authorization is not signed by the payment's merchant.
    error PayerMismatch();

    /// @param initialOwner May change the fee collector (two-step ownership transfer).
    /// @param initialFeeCollector Receives the fee of every payment.
    constructor(address initialOwner, address initialFeeCollector) Ownable(initialOwner) {
        _setFeeCollector(initialFeeCollector);
    }

    // ------------------------------------------------------------------------------------------
    // Payments
    // ------------------------------------------------------------------------------------------

    /// @notice The EIP-3009 nonce the payer signs for `p`, which is also its payment id.
    function paymentNonce(Payment calldata p) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                PAYMENT_TYPEHASH,
                p.invoiceId,
                p.merchant,
                p.token,
                p.amount,
                p.fee,
                address(this),
                block.chainid
            )
        );
    }

    /// @notice Whether payment terms `p` are settled.
    function isSettled(Payment calldata p) external view returns (bool) {
        return payerOf[paymentNonce(p)] != address(0);
    }

    /// @notice Settle one payment. Anyone may submit it: the payer's signature fixes the terms.
    function pay(Payment calldata p, Authorization calldata a) external nonReentrant {
        _settle(p, a);
    }

    /// @notice Settle many payments in one transaction; one that fails does not sink the others.
    /// @dev A failed payment reverts inside its own call frame, so its authorization stays
    ///      unused (it can be resubmitted) and nothing of it is recorded; it is reported by
    ///      `PaymentFailed` with its (truncated) revert data. A payment starved of gas is not a
    ///      failed payment: the whole batch reverts with `BatchGasTooLow`. A payment that burns
    ///      most of its gas before failing (only a hostile token or wallet does) also reverts the
    ///      batch: relayers simulate each payment and leave such payments out.
    /// @return settled How many payments settled.
    function payBatch(Payment[] calldata payments, Authorization[] calldata authorizations)
        external
        nonReentrant
        returns (uint256 settled)
    {
        uint256 count = payments.length;
        if (count != authorizations.length) revert LengthMismatch();
        for (uint256 i; i < count; ++i) {
            uint256 gasBefore = gasleft();
            // The external self-call gives each payment its own frame to revert in.
            try this.settleFromBatch(payments[i], authorizations[i]) {
                unchecked {
                    ++settled;
                }
            } catch {
                // Starved or failed? A payment that ran out of gas hands back little: the 1/64
                // EIP-150 keeps in each frame, plus whatever frames deeper down kept to revert
                // (and the token's signature check turns a starved ERC-1271 wallet into an
                // "invalid signature"). A real failure (bad signature, blacklist, expiry) costs a
                // fraction of what it was given. So a failure that leaves less than a quarter of
                // the gas is the batch's gas being too low: revert it all. Then nobody can make a
                // payment "fail" by starving it, and eth_estimateGas returns the gas that settles
                // every payment, not the least gas with which starved payments are caught.
                if (gasleft() < gasBefore / STARVED_FRACTION) revert BatchGasTooLow();
                emit PaymentFailed(payments[i].invoiceId, authorizations[i].from, _revertReason());
            }
        }
    }

    /// @notice One payment of a batch; only the router itself may call it (from `payBatch`).
    /// @dev Not `nonReentrant`: `payBatch` holds the lock, and the `OnlySelf` check stops a token
    ///      from reentering here (its calls come from the token, not from the router).
    function settleFromBatch(Payment calldata p, Authorization calldata a) external {
        if (msg.sender != address(this)) revert OnlySelf();
        _settle(p, a);
    }

    // ------------------------------------------------------------------------------------------
    // Refunds
    // ------------------------------------------------------------------------------------------

    /// @notice The EIP-3009 nonce the merchant signs to authorize refund `r`.
    function refundNonce(Refund calldata r) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                REFUND_TYPEHASH,
                paymentNonce(r.payment),
                r.payer,
                r.refundId,
                r.amount,
                address(this),
                block.chainid
            )
        );
    }

    /// @notice Refund (part of) a settled payment to its payer, with the merchant's authorization.
    /// @dev The money comes from the merchant (who received `amount - fee`); the fee is not
    ///      clawed back from the fee collector. Each refund id can be used once, because its
    ///      nonce is consumed in the merchant's EIP-3009 nonce space.
    function refund(Refund calldata r, Authorization calldata a) external nonReentrant {
        Payment calldata p = r.payment;
        bytes32 paymentId = paymentNonce(p);
        // The recorded payer, not the caller, decides where a refund may go.
        if (r.payer == address(0) || payerOf[paymentId] != r.payer) {
            revert UnknownPayment(p.invoiceId);
        }
        if (a.from != p.merchant) revert PayerMismatch();
        if (r.amount == 0) revert ZeroAmount();
        uint256 alreadyRefunded = refunded[paymentId];
        uint256 refundable = p.amount - alreadyRefunded; // never underflows: refunds <= amount
        if (r.amount > refundable) revert RefundExceedsPayment(p.invoiceId, refundable, r.amount);

        // Effects before interactions: a reentering token sees the refund already counted.
        refunded[paymentId] = alreadyRefunded + r.amount;

        IReceiveWithAuthorization(p.token).receiveWithAuthorization(
            p.merchant, address(this), r.amount, a.validAfter, a.validBefore, refundNonce(r), a.signature
        );
        IERC20(p.token).safeTransfer(r.payer, r.amount);

        emit PaymentRefunded(p.invoiceId, r.refundId, p.merchant, r.payer, p.token, r.amount);
    }

    // ------------------------------------------------------------------------------------------
    // Administration
    // ------------------------------------------------------------------------------------------

    /// @notice Send the fees of later payments to `newCollector`.
    function setFeeCollector(address newCollector) external onlyOwner {
        _setFeeCollector(newCollector);
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    function _settle(Payment calldata p, Authorization calldata a) private {
        if (p.merchant == address(0) || a.from == address(0)) revert ZeroAddress();
        if (p.amount == 0) revert ZeroAmount();
        if (p.fee > p.amount) revert FeeExceedsAmount();
        bytes32 paymentId = paymentNonce(p);
        if (payerOf[paymentId] != address(0)) revert InvoiceAlreadySettled(p.invoiceId);

        // Effects before interactions: the terms count as settled before any token is called.
        payerOf[paymentId] = a.from;

        // Pulls exactly `amount` from the payer, or reverts (bad signature, used or expired
        // authorization, blacklisted party, paused token, low balance).
        IReceiveWithAuthorization(p.token).receiveWithAuthorization(
            a.from, address(this), p.amount, a.validAfter, a.validBefore, paymentId, a.signature
        );

        IERC20 token = IERC20(p.token);
        uint256 toMerchant;
        unchecked {
            toMerchant = p.amount - p.fee; // fee <= amount was checked above
        }
        if (toMerchant != 0) token.safeTransfer(p.merchant, toMerchant);
        if (p.fee != 0) token.safeTransfer(feeCollector, p.fee);

        emit PaymentSettled(p.invoiceId, a.from, p.merchant, p.token, p.amount, p.fee);
    }

    function _setFeeCollector(address newCollector) private {
        if (newCollector == address(0)) revert ZeroAddress();
        emit FeeCollectorChanged(feeCollector, newCollector);
        feeCollector = newCollector;
    }

    /// @dev The revert data of the last failed call, cut to `MAX_REASON_BYTES`.
    function _revertReason() private pure returns (bytes memory reason) {
        assembly ("memory-safe") {
            let size := returndatasize()
            if gt(size, MAX_REASON_BYTES) { size := MAX_REASON_BYTES }
            reason := mload(0x40)
            mstore(reason, size)
            returndatacopy(add(reason, 0x20), 0, size)
            mstore(0x40, add(add(reason, 0x20), and(add(size, 31), not(31))))
        }
    }
}
